"""The guard: the one object tools talk to for anything policy-bound or destructive.

    status()                         what this server may do, and the quota
    list_page / usage / find         reading the tree (links never followed), within budgets
    removal                          removal.py: preview, the person's decision, execution (one object)
    tasks / cancel                   following and stopping server tasks

Every call is one pass: it builds its own `Listings` (each folder read once per call), and every plan,
refusal, intent and execution is audited before the call returns.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ..client import EfileApi, EfileMover, EfileTransport
from ..client.remover import EfileRemover
from ..client.walk import Listings, WalkLimits, iso_time
from ..errors import AuthError, EfileMcpError, SignInError
from ..models.quarantine_results import QuarantineStatus
from ..models.results import (
    ITEMS_LISTED_MAX,
    CancelItem,
    CancelTasksResult,
    DiskUsageResult,
    FileInfo,
    FindMatch,
    FindPathsResult,
    GetTaskResult,
    ListFilesResult,
    ProtectedHidden,
    QuotaInfo,
    RootProblem,
    Selection,
    StorageStatusResult,
    TaskInfo,
    TaskStatusCount,
    UsageChild,
    UsageRest,
    fitting_count,
)
from ..models.units import quota_bytes
from ..models.wire import Order, OrderBy, QuotaEntry
from .audit import AuditLog
from .insight import FindWalk, Totals, UsageWalk, incomplete_reason
from .paths import PathPolicy, display, expand_home, is_home_relative
from .quarantine import QUARANTINE_DIR, Quarantine

if TYPE_CHECKING:
    from .store import StateStore
from .ports import RemoveMode, ReviewPages
from .removal import ConfirmMode, LinksInside, QuarantineSender, Removal
from .requests import (
    GuardRefusal,
    Progress,
    RemovalRequest,
    walk_progress,
)
from .roots import RootsCheck
from .sealing import ConfirmationSigner
from .store import LEASE_SECONDS

log = logging.getLogger("efile_mcp.guard")

#: How long a walk that did not finish (disk_usage's resume, find_paths' cursor) is kept after its last call.
_WALK_TTL = 3600.0
_UNREADABLE_SHOWN = 10
#: A dry run waits this long at most for the quota it keeps in its plan (the review page's before -> after).
_PLAN_QUOTA_SECONDS = 5.0


class QuotaSource(Protocol):
    async def read(self) -> Any: ...  # an object with `entries: list[QuotaEntry]` and `error: str | None`


class Guard:
    def __init__(
        self,
        *,
        transport: EfileTransport,
        signer: ConfirmationSigner,
        store: StateStore,
        audit: AuditLog,
        roots: Sequence[str],
        protected: frozenset[str],
        max_paths: int,
        read_only: bool,
        confirm_mode: str,
        walk_max_entries: int,
        walk_max_seconds: float,
        concurrency: int,
        home: Callable[[], Awaitable[str]] | None = None,
        region: Callable[[], str | None] | None = None,
        quota: QuotaSource | None = None,
        clock: Callable[[], float] = time.time,
        confirm_timeout: float = 120.0,
        remove_mode: RemoveMode = "quarantine",
        execution_lease: float = LEASE_SECONDS,
        links_inside: LinksInside = "refuse",
        pages: ReviewPages | None = None,
        quarantine: QuarantineSender | None = None,
        quarantine_days: int = 7,
        show_protected: bool = False,
        max_plan_paths: int = 1_000_000,
    ) -> None:
        self.signer = signer
        self.store = store
        self.audit = audit
        self.max_paths = max_paths
        self.read_only = read_only
        self.confirm_mode = confirm_mode
        self.walk_max_entries = walk_max_entries
        self.walk_max_seconds = walk_max_seconds
        self.concurrency = concurrency
        self.clock = clock
        self._api = EfileApi(transport)
        self._remover = EfileRemover(transport)
        self._raw_roots = tuple(roots)
        self._protected = protected
        self.show_protected = show_protected
        self._home = home
        self._region = region
        self._quota = quota
        self._home_value: str | None = None
        #: The token's home as the API's root listing names it: the same for the whole process, so listed once.
        self._listed_home: str | None = None
        self._ready_lock = anyio.Lock()
        self._needs_home = any(is_home_relative(root) for root in roots)
        self.policy = PathPolicy([r for r in roots if not is_home_relative(r)], protected)
        self.roots_check = RootsCheck(self._api)
        #: The quarantine of every allowed root (guard/quarantine.py): removal by moving, restore, purge.
        self.quarantine = Quarantine(
            EfileMover(transport),
            self._listings,
            lambda: self.policy,
            audit,
            store=store,
            remover=self._remover,
            days=quarantine_days,
            clock=clock,
            concurrency=concurrency,
            ready=self._ready,
            links_inside=links_inside,
        )
        #: Removals: preview, the person's decision and execution (the only way to the client's removal).
        self.removal = Removal(
            self,
            confirm=_confirm_mode(confirm_mode),
            confirm_timeout=confirm_timeout,
            default_mode=remove_mode,
            lease_seconds=execution_lease,
            links_inside=links_inside,
            pages=pages,
            quarantine=quarantine or self.quarantine,
            max_plan_paths=max_plan_paths,
        )

    # ------------------------------------------------------------------ set-up

    async def _ready(self) -> None:
        """`~` roots mean the home the SCNet center reports: resolved once, at the first call that needs them."""
        if not self._needs_home or self._home_value is not None:
            return
        async with self._ready_lock:
            if self._home_value is not None:
                return
            assert self._home is not None
            home = await self._home()
            try:
                self.policy = PathPolicy([expand_home(root, home) for root in self._raw_roots], self._protected)
            except ValueError as exc:
                raise SignInError(
                    f"the SCNet center reports the home directory {home!r}, which cannot anchor the '~' roots of "
                    f"EFILE_ALLOWED_ROOTS ({exc}): write those roots as absolute paths."
                ) from None
            self._home_value = home
            log.info("allowed roots: %s", ", ".join(self.policy.allowed_roots))

    def _listings(self, *, keep: bool = True) -> Listings:
        return Listings(self._api, concurrency=self.concurrency, keep=keep)

    def _walk_limits(self, max_entries: int | None = None) -> WalkLimits:
        """The reading budget of one call: every walk of the call shares it."""
        return WalkLimits.starting_now(max_entries or self.walk_max_entries, self.walk_max_seconds)

    # ------------------------------------------------------------------ status and reading

    async def roots_problems(self) -> list[RootProblem]:
        """The allowed roots looked up on the storage (guard/roots.py): once, then remembered."""
        await self._ready()
        try:
            home: str | None = self._home_value or await self._default_path(None)
        except EfileMcpError:
            home = None  # the roots are still checked; a suggestion just cannot use ~
        return await self.roots_check.problems(self.policy.allowed_roots, home)

    async def status(self) -> StorageStatusResult:
        roots_problems: list[RootProblem] = []
        home: str | None = None
        quota: list[QuotaInfo] = []
        quota_error: str | None = None
        try:
            await self._ready()
            home = self._home_value or await self._default_path(None)
            roots_problems = await self.roots_problems()
        except AuthError:
            raise  # nothing can be said without a token the API accepts: the fix is the person's
        except EfileMcpError as exc:
            quota_error = str(exc)
        if self._quota is not None:
            report = await self._quota.read()
            quota = [self._quota_info(entry) for entry in report.entries]
            quota_error = report.error or quota_error
        elif quota_error is None:
            quota_error = "quota is not available in this configuration (no SCNet center and no SCNET_HPC_URL)"
        return StorageStatusResult(
            home=home,
            allowed_roots=list(self.policy.allowed_roots)
            if not self._needs_home or self._home_value
            else list(self._raw_roots),
            protected_names=sorted(self._protected),
            read_only=self.read_only,
            max_paths=self.max_paths,
            confirm_mode=self.confirm_mode,
            region=self._region() if self._region else None,
            quota=quota,
            quota_error=quota_error,
            roots_problems=roots_problems or None,
            quarantine=await self._quarantine_status(),
        )

    async def _quarantine_status(self) -> QuarantineStatus | None:
        try:
            return await self.quarantine.status()
        except AuthError:
            raise
        except EfileMcpError as exc:
            log.warning("the quarantine could not be read for storage_status: %s", exc)
            return None

    async def task_states(self, task_ids: Sequence[str]) -> dict[str, str]:
        """Each known task's status now (waiting, processing, complete, failure, cancel)."""
        lookup = await self._api.tasks(list(dict.fromkeys(task_ids)))
        return {task_id: task.status for task_id, task in lookup.tasks.items()}

    async def quota_now(self) -> list[QuotaInfo]:
        """The quota as it is now, for a dry run's plan (the review page shows before -> after); [] if unknown."""
        if self._quota is None:
            return []
        with anyio.move_on_after(_PLAN_QUOTA_SECONDS):
            try:
                report = await self._quota.read()
                return [self._quota_info(entry) for entry in report.entries]
            except EfileMcpError as exc:
                log.info("the quota could not be read for a plan: %s", exc)
        return []

    @staticmethod
    def _quota_info(entry: QuotaEntry) -> QuotaInfo:
        limit = quota_bytes(entry.threshold) if entry.threshold else None
        used = quota_bytes(float(entry.usage or 0.0))
        return QuotaInfo(
            path=entry.path or "",
            limit_bytes=limit,
            used_bytes=used,
            used_percent=round(used * 100 / limit, 1) if limit else None,
        )

    async def list_page(
        self, path: str | None, *, keyword: str | None, start: int, limit: int, order_by: OrderBy, order: Order
    ) -> ListFilesResult:
        page = await self._api.list_dir(path, keyword=keyword, start=start, limit=limit, order_by=order_by, order=order)
        entries = [FileInfo.from_wire(entry) for entry in page.file_list]
        end = start + len(entries)
        hidden = None
        if entries and self._names_hidden_in(page.path or path or ""):
            size = sum(e.size or 0 for e in entries if e.type == "file")
            hidden, entries = ProtectedHidden(count=len(entries), size=size), []
        return ListFilesResult(
            protected_hidden=hidden,
            path=page.path or path or "",
            total=page.total,
            start=start,
            entries=entries,
            next_start=end if entries and end < page.total else None,
        )

    async def home(self) -> str:
        """The home directory: where the read tools look when no path is given."""
        await self._ready()
        return await self._default_path(None)

    def _names_hidden_in(self, folder: str) -> bool:
        """A protected folder (or one inside it): its entries are counted, not named (EFILE_SHOW_PROTECTED)."""
        return not self.show_protected and self.policy.protected_component(folder) is not None

    async def _default_path(self, path: str | None) -> str:
        if path:
            return path
        if self._home is not None:
            return await self._home()
        if self._listed_home is None:  # storage_status asked twice per call, a request each time
            page = await self._api.list_dir(None, start=0, limit=1)
            if not page.path:
                raise GuardRefusal("no_home", "the home directory is not known here: give an absolute path.")
            self._listed_home = page.path
        return self._listed_home

    async def usage(
        self,
        path: str | None,
        *,
        top: int,
        max_entries: int | None,
        resume: str | None = None,
        progress: Progress | None = None,
    ) -> DiskUsageResult:
        await self._ready()
        if resume:
            usage = UsageWalk.from_json(await self._load_walk(resume, "usage-", "disk_usage"))
        else:
            usage = UsageWalk(await self._default_path(path))
        root = usage.root
        stats = await usage.read_on(self._listings(keep=False), self._walk_limits(max_entries), walk_progress(progress))
        if any(u.path == root for u in stats.unreadable):
            raise GuardRefusal("unreadable", f"cannot list {display(root)}: {stats.unreadable[0].reason}")
        resume_id = await self._keep_walk(resume, "usage-", usage.walk.finished, usage.to_json)
        ranked, rest_sum, rest_count = usage.children()
        shown, rest = ranked[:top], ranked[top:]
        hidden = None
        if self._names_hidden_in(root):  # the totals stand; the children are not named
            shown, rest = [], ranked
            hidden = ProtectedHidden(count=len(ranked) + rest_count, size=usage.total.size)
        children = [
            UsageChild(
                path=root.rstrip("/") + "/" + name,
                type=kind,  # type: ignore[arg-type]
                size=totals.size,
                file_count=totals.files,
                newest_modified=iso_time(totals.newest),
                quarantine=True if name == QUARANTINE_DIR else None,
            )
            for name, kind, totals in shown
        ]
        others = None
        if rest or rest_count:
            summed = Totals()
            summed.add(rest_sum)
            for _, _, totals in rest:
                summed.add(totals)
            others = UsageRest(count=len(rest) + rest_count, size=summed.size, file_count=summed.files)
        return DiskUsageResult(
            path=root,
            total_size=usage.total.size,
            file_count=usage.total.files,
            dir_count=usage.total.dirs,
            link_count=usage.total.links,
            newest_modified=iso_time(usage.total.newest),
            complete=stats.complete,
            incomplete_reason=incomplete_reason(stats, resumable=resume_id is not None),
            entries_seen=stats.entries_seen,
            requests=stats.requests,
            children=children,
            others=others,
            unreadable=[u.path for u in stats.unreadable[:_UNREADABLE_SHOWN]] or None,
            unreadable_count=stats.unreadable_count or None,
            folders_pending=usage.walk.folders_pending or None,
            resume=resume_id,
            protected_hidden=hidden,
        )

    async def find(
        self, selection: Selection, *, limit: int, cursor: str | None, progress: Progress | None = None
    ) -> FindPathsResult:
        await self._ready()
        if cursor:
            search = FindWalk.from_json(await self._load_walk(cursor, "find-", "find_paths", what="cursor"))
        else:
            search = FindWalk(selection, self.clock())
        root = search.selection.path
        stats = search.walk.stats
        if len(search.found) < limit and not search.walk.finished:
            stats = await search.read_on(
                self._listings(keep=False), self._walk_limits(), want=limit, progress=walk_progress(progress)
            )
        if any(u.path == root for u in stats.unreadable):
            raise GuardRefusal("unreadable", f"cannot list {display(root)}: {stats.unreadable[0].reason}")
        page = search.take(limit)
        # Very long paths: the page ends where the answer would outgrow its budget (the rest opens the next page).
        kept = fitting_count(
            [{"path": m.path, "type": m.kind, "size": m.size, "modified": iso_time(m.mtime)} for m in page]
        )
        if kept < len(page):
            search.found = page[kept:] + search.found  # still largest first
            page = page[:kept]
        inside = [m for m in page if self._names_hidden_in(m.path.rstrip("/").rpartition("/")[0] or "/")]
        if inside:
            page = [m for m in page if m not in inside]
        hidden = ProtectedHidden(count=len(inside), size=sum(m.size for m in inside)) if inside else None
        next_cursor = await self._keep_walk(cursor, "find-", search.finished, search.to_json)
        reason = incomplete_reason(stats, "EFILE_WALK_MAX_ENTRIES", resumable=next_cursor is not None)
        if next_cursor is not None and not reason:
            reason = "more of the tree is still to be searched: pass next_cursor for the next page"
        return FindPathsResult(
            path=root,
            matches=[FindMatch(path=m.path, type=m.kind, size=m.size, modified=iso_time(m.mtime)) for m in page],  # type: ignore[arg-type]
            total_matches=search.count,
            total_size=search.size,
            complete=next_cursor is None and stats.complete,
            incomplete_reason=reason,
            entries_seen=stats.entries_seen,
            next_cursor=next_cursor,
            unreadable_count=stats.unreadable_count or None,
            folders_pending=search.walk.folders_pending or None,
            protected_hidden=hidden,
        )

    async def _load_walk(
        self, walk_id: str, prefix: str, tool: str, *, what: str = "resume value", take: bool = False
    ) -> dict[str, Any]:
        """A saved walk's state; `take`: claimed by this call alone (forgotten in the same step, so that two calls
        continuing it cannot both write on from it: the one that gets it saves what follows)."""
        data = None
        if walk_id.startswith(prefix):
            data = await (self.store.take_walk(walk_id) if take else self.store.load_walk(walk_id))
        if data is None:
            raise GuardRefusal(
                "resume",
                f"this {what} is unknown, has expired (a walk is kept {int(_WALK_TTL // 60)} minutes after its "
                f"last call) or is being continued by another call right now: call {tool} again without it, which "
                "starts over, or with the resume value of the call that continued it.",
            )
        loaded: dict[str, Any] = json.loads(data.decode("utf-8", "surrogatepass"))
        return loaded

    async def _keep_walk(
        self, walk_id: str | None, prefix: str, finished: bool, state: Callable[[], dict[str, Any]]
    ) -> str | None:
        """Save a walk that is not finished (under its id, or a new one) and return the id; forget a finished one."""
        if finished:
            if walk_id:
                await self.store.drop_walk(walk_id)
            return None
        walk_id = walk_id or prefix + secrets.token_hex(8)
        blob = json.dumps(state(), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
        await self.store.save_walk(walk_id, blob, self.clock() + _WALK_TTL)
        return walk_id

    # ------------------------------------------------------------------ tasks

    async def tasks(
        self,
        task_ids: Sequence[str] | None,
        plan_id: str | None,
        *,
        wait_seconds: float,
        progress: Progress | None = None,
    ) -> GetTaskResult:
        wanted = list(dict.fromkeys(task_ids or ()))
        if plan_id:
            data = await self.store.load_plan("run-" + plan_id)
            if data is None:
                raise GuardRefusal(
                    "unknown_plan",
                    f"no execution of plan {plan_id!r} with server tasks is known here "
                    "(it had none, or it is older than a day): pass task_ids instead.",
                )
            wanted = list(dict.fromkeys([*wanted, *json.loads(data)]))
        if not wanted:
            raise GuardRefusal("no_tasks", "give task_ids or the plan_id of an execution.")
        started = anyio.current_time()
        deadline = started + wait_seconds
        interval = 0.5
        while True:
            lookup = await self._api.tasks(wanted)
            ended = sum(1 for task in lookup.tasks.values() if task.terminal)
            all_terminal = ended == len(lookup.tasks)
            if progress is not None:
                await progress(
                    ended + len(lookup.not_found), len(wanted), f"{ended} of {len(lookup.tasks)} tasks ended"
                )
            now = anyio.current_time()
            if all_terminal or now >= deadline:
                break
            await anyio.sleep(min(interval, deadline - now))
            # A long wait polls at most every 2 s after the first few, and backs off to 5 s.
            interval = min(max(interval * 1.5, 2.0 if now - started > 4 else interval * 1.5), 5.0)
        known = [lookup.tasks[t] for t in wanted if t in lookup.tasks]
        counts = Counter(task.status for task in known)
        if len(known) > ITEMS_LISTED_MAX:
            shown = [t for t in known if t.status != "complete"][:ITEMS_LISTED_MAX]
        else:
            shown = known
        return GetTaskResult(
            tasks=[TaskInfo.from_wire(task) for task in shown],
            by_status=[TaskStatusCount(status=s, count=c) for s, c in sorted(counts.items())],
            tasks_not_shown=(len(known) - len(shown)) or None,
            not_found=lookup.not_found[:ITEMS_LISTED_MAX],
            not_found_count=len(lookup.not_found) if len(lookup.not_found) > ITEMS_LISTED_MAX else None,
            # Unknown ids have not been seen to end: never "all ended" about tasks nobody knows.
            all_terminal=all_terminal and not lookup.not_found,
            waited_seconds=round(anyio.current_time() - started, 3),
        )

    async def cancel(self, task_ids: Sequence[str]) -> CancelTasksResult:
        wanted = list(dict.fromkeys(task_ids))
        running: list[str] = []
        sent = False
        try:
            before = await self._api.tasks(wanted)
            running = [t for t in wanted if t in before.tasks and not before.tasks[t].terminal]
            if running:
                sent = True
                await self._api.cancel(running)
            after = await self._api.tasks(running) if running else before
        except BaseException as exc:
            if sent:  # the cancel went out (or may have): the audit says so even if the call then failed
                await self.audit.write(
                    "cancel", tool="cancel_tasks", decision=f"requested, then {type(exc).__name__}", task_ids=running
                )
            raise
        items: list[CancelItem] = []
        for task_id in wanted:
            if task_id in before.not_found:
                items.append(CancelItem(task_id=task_id, cancelled=False, reason="not found (unknown or expired id)"))
                continue
            if task_id not in running:
                status = before.tasks[task_id].status
                items.append(CancelItem(task_id=task_id, cancelled=False, status=status, reason=f"already {status}"))
                continue
            later = after.tasks.get(task_id)
            status_now = later.status if later else None
            if status_now == "cancel":
                items.append(CancelItem(task_id=task_id, cancelled=True, status=status_now))
            else:
                items.append(
                    CancelItem(
                        task_id=task_id,
                        cancelled=False,
                        status=status_now,
                        reason=(
                            f"the server reports {status_now or 'nothing'} after the cancel request; check with get_task"
                        ),
                    )
                )
        await self.audit.write(
            "cancel",
            tool="cancel_tasks",
            decision="requested" if running else "nothing_to_cancel",
            task_ids=running,
            items=[item.model_dump(exclude_none=True) for item in items],
        )
        return CancelTasksResult(tasks=items)


# ---------------------------------------------------------------------------------------------------


def _confirm_mode(value: str) -> ConfirmMode:
    if value not in ("auto", "human", "token"):
        raise ValueError(f"EFILE_CONFIRM must be auto, human or token, not {value!r}")
    return value  # type: ignore[return-value]


__all__ = ["Guard", "GuardRefusal", "RemovalRequest", "expand_home"]
