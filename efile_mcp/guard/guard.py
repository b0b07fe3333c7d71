"""The guard: the one object tools talk to for anything policy-bound or destructive.

    status()                         what this server may do, and the quota
    list_page / usage / find         reading the tree (links never followed), within budgets
    dry_run(paths | select)          policy -> the real objects (links, folders' contents) -> Plan -> store -> token
    question(request)                the person's form for a valid request (marks the token "asked")
    execute(request)                 token -> stored plan -> redeemed once (store) -> listed again -> changed
                                     paths set aside -> audit intent (fsync, fail closed) -> remove -> audit
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
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from ..client import EfileApi, EfileTransport
from ..client.removal import EfileRemover, RemovalRun, RemoveOutcome
from ..client.walk import Listings, iso_time
from ..errors import AuthError, EfileMcpError, SignInError
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
    QuotaInfo,
    RemoveItem,
    RemovePathsResult,
    Selection,
    StorageStatusResult,
    TaskInfo,
    TaskStatusCount,
    UsageChild,
    UsageRest,
)
from ..models.wire import Order, OrderBy, QuotaEntry
from .audit import AuditLog
from .insight import Matcher, Totals, find, incomplete_reason, usage_collector
from .inspect import Budget, Inspector
from .paths import MAX_PATH_BYTES, PathPolicy, PathRefusal, collapse, display
from .report import Detail, item_of, question, shape, summarise
from .seen import Plan, SeenPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import StateStore
from .tokens import ConfirmationRefused, ConfirmationSigner, path_set_digest

log = logging.getLogger("efile_mcp.guard")

TOOL = "remove_paths"
_TASK_IDS_IN_ERRORS = 50
_FIND_CURSOR_TTL = 600.0
_UNREADABLE_SHOWN = 10
_REFUSED_PATHS_AUDITED = 200


class GuardRefusal(EfileMcpError):
    """The whole call is refused before anything is sent. The message tells the agent what to do."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class QuotaSource(Protocol):
    async def read(self) -> Any: ...  # an object with `entries: list[QuotaEntry]` and `error: str | None`


Progress = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class RemovalRequest:
    """What an execution (or the person's form) is asked for: a token, and optionally paths or a selection to match."""

    token: str | None
    paths: Sequence[str] | None = None
    select: Selection | None = None


def _home_relative(root: str) -> bool:
    return root == "~" or root.startswith("~/")


def expand_home(root: str, home: str) -> str:
    if not _home_relative(root):
        return root
    return (home.rstrip("/") + root[1:]) or "/"


def _selection_key(selection: Selection) -> dict[str, Any]:
    return selection.model_dump(exclude_none=True)


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
        self._home = home
        self._region = region
        self._quota = quota
        self._home_value: str | None = None
        self._ready_lock = anyio.Lock()
        self._needs_home = any(_home_relative(root) for root in roots)
        self.policy = PathPolicy([r for r in roots if not _home_relative(r)], protected)

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

    def _budget(self, max_entries: int | None = None) -> Budget:
        return Budget(max_entries or self.walk_max_entries, anyio.current_time() + self.walk_max_seconds)

    def _walk_limits(self, max_entries: int | None = None) -> dict[str, Any]:
        return {"max_entries": max_entries or self.walk_max_entries, "max_seconds": self.walk_max_seconds}

    async def _refuse(
        self, code: str, message: str, *, dry_run: bool, paths: Sequence[str] = (), quiet: bool = False, **extra: Any
    ) -> None:
        """Audit the refusal (unless `quiet`: only looking, the call that acts will audit it) and raise it."""
        if quiet:
            raise GuardRefusal(code, message)
        await self.audit.write(
            "refusal", tool=TOOL, dry_run=dry_run, decision="refused", reason=code,
            paths_count=len(paths), paths=[p[:300] for p in list(paths)[:_REFUSED_PATHS_AUDITED]], **extra,
        )
        raise GuardRefusal(code, message)

    # ------------------------------------------------------------------ status and reading

    async def status(self) -> StorageStatusResult:
        home: str | None = None
        quota: list[QuotaInfo] = []
        quota_error: str | None = None
        try:
            await self._ready()
            home = self._home_value or await self._default_path(None)
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
            allowed_roots=list(self.policy.allowed_roots) if not self._needs_home or self._home_value else list(self._raw_roots),
            protected_names=sorted(self._protected),
            read_only=self.read_only,
            max_paths=self.max_paths,
            confirm_mode=self.confirm_mode,
            region=self._region() if self._region else None,
            quota=quota,
            quota_error=quota_error,
        )

    @staticmethod
    def _quota_info(entry: QuotaEntry) -> QuotaInfo:
        limit = entry.threshold if entry.threshold else None
        used = float(entry.usage or 0.0)
        return QuotaInfo(
            path=entry.path or "",
            limit_gb=limit,
            used_gb=used,
            used_percent=round(used * 100 / limit, 1) if limit else None,
        )

    async def list_page(
        self, path: str | None, *, keyword: str | None, start: int, limit: int, order_by: OrderBy, order: Order
    ) -> ListFilesResult:
        page = await self._api.list_dir(path, keyword=keyword, start=start, limit=limit, order_by=order_by, order=order)
        entries = [FileInfo.from_wire(entry) for entry in page.file_list]
        end = start + len(entries)
        return ListFilesResult(
            path=page.path or path or "",
            total=page.total,
            start=start,
            entries=entries,
            next_start=end if entries and end < page.total else None,
        )

    async def _default_path(self, path: str | None) -> str:
        if path:
            return path
        if self._home is not None:
            return await self._home()
        page = await self._api.list_dir(None, start=0, limit=1)
        if not page.path:
            raise GuardRefusal("no_home", "the home directory is not known here: give an absolute path.")
        return page.path

    async def usage(
        self, path: str | None, *, top: int, max_entries: int | None, progress: Progress | None = None
    ) -> DiskUsageResult:
        await self._ready()
        root = await self._default_path(path)
        usage, on_dir = usage_collector(root)
        listings = self._listings(keep=False)
        stats = await listings.walk(root, on_dir, progress=_walk_progress(progress), **self._walk_limits(max_entries))
        if any(u.path == root for u in stats.unreadable):
            raise GuardRefusal("unreadable", f"cannot list {display(root)}: {stats.unreadable[0].reason}")
        ranked = sorted(usage.children.items(), key=lambda kv: (-kv[1][1].size, -kv[1][1].files, kv[0]))
        shown, rest = ranked[:top], ranked[top:]
        children = [
            UsageChild(path=root.rstrip("/") + "/" + name, type=kind, size=totals.size, file_count=totals.files,  # type: ignore[arg-type]
                       newest_modified=iso_time(totals.newest))
            for name, (kind, totals) in shown
        ]
        others = None
        if rest:
            summed = Totals()
            for _, (_, totals) in rest:
                summed.add(totals)
            others = UsageRest(count=len(rest), size=summed.size, file_count=summed.files)
        return DiskUsageResult(
            path=root,
            total_size=usage.total.size,
            file_count=usage.total.files,
            dir_count=usage.total.dirs,
            link_count=usage.total.links,
            newest_modified=iso_time(usage.total.newest),
            complete=stats.complete,
            incomplete_reason=incomplete_reason(stats),
            entries_seen=stats.entries_seen,
            requests=stats.requests,
            children=children,
            others=others,
            unreadable=[u.path for u in stats.unreadable[:_UNREADABLE_SHOWN]] or None,
            unreadable_count=len(stats.unreadable) or None,
        )

    async def find(
        self, selection: Selection, *, limit: int, cursor: str | None, progress: Progress | None = None
    ) -> FindPathsResult:
        await self._ready()
        if cursor:
            return await self._find_page(cursor, limit)
        matches, stats = await find(
            self._listings(keep=False), selection, Matcher(selection, self.clock()),
            progress=_walk_progress(progress), **self._walk_limits(),
        )
        if any(u.path == selection.path for u in stats.unreadable):
            raise GuardRefusal("unreadable", f"cannot list {display(selection.path)}: {stats.unreadable[0].reason}")
        rows = [[m.path, m.kind, m.size, m.mtime] for m in matches]
        header = {
            "path": selection.path, "total": len(rows), "size": _non_overlapping_size(matches),
            "complete": stats.complete, "reason": incomplete_reason(stats, "EFILE_WALK_MAX_ENTRIES"),
            "seen": stats.entries_seen, "unreadable": len(stats.unreadable),
        }
        search_id = None
        if len(rows) > limit:
            search_id = "find-" + secrets.token_hex(8)
            blob = json.dumps({"h": header, "r": rows}, ensure_ascii=False, separators=(",", ":"))
            await self.store.save_plan(search_id, blob.encode("utf-8", "surrogatepass"), self.clock() + _FIND_CURSOR_TTL)
        return _find_result(header, rows, 0, limit, search_id)

    async def _find_page(self, cursor: str, limit: int) -> FindPathsResult:
        search_id, _, offset_text = cursor.rpartition(":")
        data = await self.store.load_plan(search_id) if search_id.startswith("find-") else None
        if data is None or not offset_text.isdigit():
            raise GuardRefusal("cursor", "this cursor is unknown or has expired (they last 10 minutes): call "
                               "find_paths again without a cursor.")
        blob = json.loads(data.decode("utf-8", "surrogatepass"))
        return _find_result(blob["h"], blob["r"], int(offset_text), limit, search_id)

    # ------------------------------------------------------------------ dry run

    def _screen(self, paths: Sequence[str]) -> tuple[list[str], dict[str, str], list[str]]:
        """Policy (no I/O): distinct paths, refusals by path, and the accepted ones.

        A folder named together with a protected path inside it would take that path with it: the request
        itself says the protected path matters, so the folder is refused too, however the inner path is spelled.
        """
        distinct = list(dict.fromkeys(paths))
        refused: dict[str, str] = {}
        accepted: dict[str, None] = {}
        protected_inner: list[tuple[str, str]] = []
        for path in distinct:
            verdict = self.policy.check(path)
            if isinstance(verdict, PathRefusal):
                refused[path] = verdict.message
                if isinstance(path, str) and self.policy.protected_component(path):
                    protected_inner.append((path, "/" + "/".join(p for p in path.split("/") if p)))
            else:
                accepted[verdict] = None
        for shown, canonical in protected_inner:
            for ancestor in list(accepted):
                if canonical.startswith(ancestor.rstrip("/") + "/"):
                    del accepted[ancestor]
                    refused[ancestor] = (
                        f"it contains {display(shown)}, which is protected and named in this same request: removing "
                        "this folder would remove it too. Name the other contents individually instead."
                    )
        return distinct, refused, list(accepted)

    def _bound(self, count: int, what: str) -> str | None:
        if count > self.max_paths:
            return (f"{what} {count} paths; the limit is {self.max_paths} per call (EFILE_MAX_PATHS). Nothing was "
                    "done. Split the request, narrow the selection, or remove a common parent folder instead.")
        return None

    async def dry_run(
        self, paths: Sequence[str] | None, select: Selection | None, *, detail: Detail = "auto",
        progress: Progress | None = None,
    ) -> RemovePathsResult:
        await self._ready()
        if self.read_only:
            raise GuardRefusal("read_only", "efile-mcp runs read-only (EFILE_READ_ONLY): removal is disabled.")
        listings = self._listings()
        budget = self._budget()
        not_found_note: str | None = None
        if select is not None:
            named, matched_covered, select_note = await self._expand(select, listings, progress)
            requested = len(named) + matched_covered
            not_found_note = select_note
        else:
            assert paths is not None
            if not paths:
                await self._refuse("no_paths", "name at least one absolute path to remove (or give select).", dry_run=True)
            if (why := self._bound(len(paths), "this call names")) is not None:
                await self._refuse("too_many_paths", why, dry_run=True, paths=paths)
            named, matched_covered, requested = list(paths), 0, len(paths)
        distinct, refused, accepted = self._screen(named)
        collapsed = collapse(accepted)
        to_check = list(collapsed.to_send)
        if select is not None and (why := self._bound(len(to_check), "the selection matches")) is not None:
            await self._refuse("too_many_paths", why, dry_run=True)
        inspection = await Inspector(listings, self.policy, budget).check(to_check, walk_folders=True)
        items: dict[str, RemoveItem] = {p: RemoveItem(path=p, status="refused", reason=r) for p, r in refused.items()}
        for path in to_check:
            if path in inspection.seen:
                items[path] = item_of(inspection.seen[path])
            elif path in inspection.refused:
                items[path] = RemoveItem(path=path, status="refused", reason=inspection.refused[path])
            else:
                items[path] = RemoveItem(path=path, status="missing", reason=inspection.missing.get(path))
        for path, outer in collapsed.covered.items():
            items[path] = RemoveItem(
                path=path, status=items[outer].status,
                reason=f"inside {display(outer)}, which this call removes; not sent separately",
            )
        ordered = [items[p] for p in distinct if p in items]
        removable = [inspection.seen[p] for p in to_check if p in inspection.seen]
        covered = [p for p, outer in collapsed.covered.items() if outer in inspection.seen]
        summary = summarise(
            [i for i in ordered if i.path not in collapsed.covered],
            requested=requested, covered=len(collapsed.covered) + matched_covered, counted=removable,
        )
        plan_id = secrets.token_hex(12)
        now = self.clock()
        token = expires_iso = None
        if removable:
            plan = Plan(plan_id=plan_id, expires_at=float(int(now + self.signer.ttl)), paths=removable,
                        select=_selection_key(select) if select is not None else None, covered=covered, created_at=now)
            await self.store.save_plan(plan_id, plan.to_bytes(), plan.expires_at)
            token = self.signer.seal(plan_id, plan.path_set, plan.expires_at, total_size=summary.total_size)
            expires_iso = self.signer.unseal(token).expires_at_iso
        await self.audit.write(
            "plan", tool=TOOL, dry_run=True, decision="planned" if token else "nothing_to_remove",
            plan_id=plan_id if token else None, select=_selection_key(select) if select else None,
            removable=[s.path for s in removable], summary=summary.model_dump(exclude_none=True),
            exceptions=[_audit_item(i) for i in ordered if i.status != "would_remove"][:_REFUSED_PATHS_AUDITED],
        )
        if token is None:
            next_step = "Nothing here can be removed; see each item's status and reason."
            if not_found_note:
                next_step = not_found_note + " " + next_step
        else:
            how = ("call remove_paths with dry_run=false and confirmation_token set to this token (paths and select "
                   f"may be left out; the token stands for exactly this plan), before {expires_iso}. It works once.")
            next_step = (f"Show the person what would be removed ({summary.would_remove} path(s), "
                         f"{'at least ' if summary.lower_bound else ''}{summary.total_size} bytes, "
                         f"{summary.file_count} files). To delete them, {how}")
            if not_found_note:
                next_step = not_found_note + " " + next_step
        result = RemovePathsResult(
            dry_run=True, plan_id=plan_id if token else None, summary=summary, confirmation_token=token,
            expires_at=expires_iso,
            confirm_paths=[s.path for s in removable] if token and len(removable) <= ITEMS_LISTED_MAX else None,
            next_step=next_step,
        )
        listed = ordered if select is None else [i for i in ordered if i.path not in collapsed.covered]
        return shape(result, listed, detail)

    async def _expand(
        self, select: Selection, listings: Listings, progress: Progress | None
    ) -> tuple[list[str], int, str | None]:
        """A selection -> the matching paths (a match inside another match is covered), walking below select.path."""
        root = select.path
        problem = self._selection_root_problem(root)
        if problem:
            await self._refuse("select_path", problem, dry_run=True, paths=[root])
        if root not in self.policy.allowed_roots:
            inspection = await Inspector(listings, self.policy, self._budget()).check([root], walk_folders=False)
            seen = inspection.seen.get(root)
            if seen is None or seen.kind != "directory":
                reason = inspection.refused.get(root) or inspection.missing.get(root) or "it is not a folder"
                await self._refuse("select_path", f"select.path {display(root)} cannot be searched: {reason}",
                                   dry_run=True, paths=[root])
        matches, stats = await find(listings, select, Matcher(select, self.clock()),
                                    progress=_walk_progress(progress), **self._walk_limits())
        if any(u.path == root for u in stats.unreadable):
            await self._refuse("select_path", f"cannot list {display(root)}: {stats.unreadable[0].reason}",
                               dry_run=True, paths=[root])
        collapsed = collapse(m.path for m in matches)
        note = None
        if not stats.complete:
            note = (f"The search was incomplete ({incomplete_reason(stats, 'EFILE_WALK_MAX_ENTRIES')}): there may be "
                    "more matches than this plan holds.")
        if not matches:
            note = (note + " " if note else "") + "The selection matches nothing."
        return list(collapsed.to_send), len(collapsed.covered), note

    def _selection_root_problem(self, root: str) -> str | None:
        if root in self.policy.allowed_roots:
            return None
        verdict = self.policy.check(root)
        if isinstance(verdict, PathRefusal):
            return f"select.path is not searchable for removal: {verdict.message}"
        return None

    # ------------------------------------------------------------------ execution

    async def _plan_for(self, request: RemovalRequest, *, quiet: bool = False) -> tuple[Plan, str]:
        """The stored plan a request names, if the token is genuine and the request matches it. Raises GuardRefusal.

        `quiet`: the person's form only looks; the execution that follows refuses (and audits) for real.
        """
        try:
            sealed = self.signer.unseal(request.token)
        except ConfirmationRefused as exc:
            await self._refuse(exc.code, str(exc), dry_run=False, paths=request.paths or (), quiet=quiet)
            raise AssertionError("unreachable") from None
        data = await self.store.load_plan(sealed.plan_id)
        if data is None:
            await self._refuse("unknown_plan", "the plan behind this confirmation token is no longer known (it expired "
                               "or was made by a server that does not share this one's state store): run remove_paths "
                               "with dry_run=true again.", dry_run=False, quiet=quiet, plan_id=sealed.plan_id)
        assert data is not None
        plan = Plan.from_bytes(data)
        if path_set_digest(plan.path_set) != sealed.digest:
            await self._refuse("invalid_token", "the confirmation token does not match its plan: run a new dry run.",
                               dry_run=False, quiet=quiet, plan_id=sealed.plan_id)
        if request.paths is not None:
            if (why := self._bound(len(request.paths), "this call names")) is not None:
                await self._refuse("too_many_paths", why, dry_run=False, paths=request.paths, quiet=quiet)
            _, refused, accepted = self._screen(request.paths)
            if refused:
                first = next(iter(refused.values()))
                await self._refuse("policy", f"{len(refused)} path(s) are not allowed, e.g. {first} Nothing was "
                                   "deleted. Remove them from the request (a dry run shows which).",
                                   dry_run=False, paths=request.paths, quiet=quiet)
            given = set(collapse(accepted).to_send)
            confirmed = set(plan.path_set)
            if given != confirmed:
                extra, absent = sorted(given - confirmed)[:3], sorted(confirmed - given)[:3]
                message = (f"the paths differ from the set the dry run confirmed ({len(confirmed)} confirmed, "
                           f"{len(given)} given after removing duplicates and paths inside other given paths)")
                if extra:
                    message += f"; not confirmed: {', '.join(map(repr, extra))}"
                if absent:
                    message += f"; confirmed but not given: {', '.join(map(repr, absent))}"
                await self._refuse("path_set_mismatch", message + ". Pass the dry run's token alone (or exactly its "
                                   "confirm_paths), or run a new dry run for the new set. Nothing was deleted.",
                                   dry_run=False, paths=request.paths, quiet=quiet, plan_id=plan.plan_id)
        if request.select is not None and _selection_key(request.select) != plan.select:
            await self._refuse("select_mismatch", "this select differs from the one the dry run expanded: pass the "
                               "token alone (or the same select), or run a new dry run. Nothing was deleted.",
                               dry_run=False, quiet=quiet, plan_id=plan.plan_id)
        return plan, sealed.expires_at_iso

    async def question(self, request: RemovalRequest) -> str | None:
        """The person's form for a request that would pass right now; None when it will be refused anyway.

        Marks the token "asked": from now on only the person's yes can execute it.
        """
        if self.read_only:
            return None
        await self._ready()
        try:
            plan, _ = await self._plan_for(request, quiet=True)
        except GuardRefusal:
            return None  # the tool body refuses it with the precise reason (and audits it)
        if not await self.store.mark_asked(plan.plan_id, plan.expires_at):
            return None  # already spent: refused by the body as reused
        return question(plan.paths, covered=len(plan.covered), now=plan.created_at or None)

    async def refuse_unconfirmed(self, request: RemovalRequest, code: str, message: str, *, spend: bool) -> None:
        """The person did not confirm: audit it, and spend the token so it cannot be retried."""
        plan_id = None
        if spend:
            try:
                sealed = self.signer.unseal(request.token)
            except ConfirmationRefused:
                pass
            else:
                plan_id = sealed.plan_id
                await self.store.spend(sealed.plan_id, sealed.expires_at)
        await self._refuse(code, message, dry_run=False, paths=request.paths or (), plan_id=plan_id)

    async def execute(
        self, request: RemovalRequest, *, person_confirmed: bool, detail: Detail = "auto",
        progress: Progress | None = None,
    ) -> RemovePathsResult:
        await self._ready()
        if self.read_only:
            raise GuardRefusal("read_only", "efile-mcp runs read-only (EFILE_READ_ONLY): removal is disabled.")
        plan, _ = await self._plan_for(request)
        outcome = await self.store.redeem(plan.plan_id, plan.expires_at, person_confirmed=person_confirmed)
        if outcome == "spent":
            await self._refuse("reused", "this confirmation token was already used (or refused by the person): each "
                               "token confirms one execution. Run remove_paths with dry_run=true again to preview what "
                               "is left.", dry_run=False, plan_id=plan.plan_id)
        if outcome == "asked":
            await self._refuse("person_asked", "the person was asked to confirm this token and only their yes can "
                               "execute it; nothing was deleted. Run a new dry run and let the person confirm it.",
                               dry_run=False, plan_id=plan.plan_id)
        confirmed_by = "person" if person_confirmed else "token"

        # What is there now: the same objects, or not sent.
        listings = self._listings()
        now_seen = await Inspector(listings, self.policy, self._budget()).check(plan.path_set, walk_folders=False)
        items: dict[str, RemoveItem] = {}
        to_send: list[str] = []
        for seen in plan.paths:
            current = now_seen.seen.get(seen.path)
            if seen.path in now_seen.missing:
                items[seen.path] = RemoveItem(path=seen.path, status="missing", reason="already absent")
            elif current is None:
                items[seen.path] = RemoveItem(path=seen.path, status="changed", reason=_changed(
                    now_seen.refused.get(seen.path, "it can no longer be checked")))
            elif (current.kind, current.listed_size if seen.kind != "directory" else 0, current.mtime) != (
                seen.kind, seen.listed_size if seen.kind != "directory" else 0, seen.mtime
            ):
                items[seen.path] = RemoveItem(path=seen.path, status="changed", reason=_changed(_difference(seen, current)))
            else:
                to_send.append(seen.path)

        await self.audit.write(  # fails closed: AuditUnavailable here means nothing is sent
            "intent", tool=TOOL, plan_id=plan.plan_id, confirmed_by=confirmed_by, paths=to_send,
            changed=[p for p, i in items.items() if i.status == "changed"],
        )
        run = RemovalRun(paths=tuple(to_send))
        error: EfileMcpError | None = None
        interrupted: str | None = None
        try:
            if to_send:
                await self._remover.remove(run)
        except AuthError as exc:
            error = exc
        except BaseException as exc:
            interrupted = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else type(exc).__name__
            raise
        finally:
            run.settle_unfinished()
            by_path = {s.path: s for s in plan.paths}
            for path in to_send:
                items[path] = _item_from_outcome(run.outcomes[path], by_path[path])
            ordered = [items[s.path] for s in plan.paths]
            task_ids = [i.task_id for i in ordered if i.task_id]
            done = [by_path[i.path] for i in ordered if i.status in ("removed", "queued")]
            requested, covered_items = len(plan.paths) + len(plan.covered), _covered_items(request, items)
            if request.paths is not None:
                requested = len(request.paths)
            summary = summarise(ordered, requested=requested,
                                covered=len(covered_items) if request.paths is not None else len(plan.covered),
                                counted=done)
            ordered += covered_items
            with anyio.CancelScope(shield=True):
                if task_ids:
                    await self.store.save_plan("run-" + plan.plan_id, json.dumps(task_ids).encode(), plan.expires_at + 86400)
            await self.audit.write(
                "execution", tool=TOOL, dry_run=False,
                decision=f"interrupted: {interrupted}" if interrupted else "executed",
                confirmed_by=confirmed_by, plan_id=plan.plan_id, requests_sent=run.requests_sent,
                task_ids=task_ids, items=[_audit_item(i) for i in ordered],
                summary=summary.model_dump(exclude_none=True), error=str(error) if error else None,
            )
        if error is not None:
            raise GuardRefusal("auth", _auth_stopped(error, run, task_ids, self.audit))
        not_previewed = None
        if plan.select is not None and error is None:
            not_previewed = await self._not_previewed(plan)
        result = RemovePathsResult(
            dry_run=False, plan_id=plan.plan_id, summary=summary,
            task_ids=task_ids if len(task_ids) <= ITEMS_LISTED_MAX else None,
            task_count=len(task_ids) if len(task_ids) > ITEMS_LISTED_MAX else None,
            not_previewed=not_previewed or None,
            next_step=_next_step_after_execution(summary, plan.plan_id, len(task_ids), not_previewed),
        )
        return shape(result, ordered, detail)

    async def _not_previewed(self, plan: Plan) -> int:
        """Matches of the plan's selection now present that the dry run did not show: left alone, and counted."""
        select = Selection.model_validate(plan.select)
        try:
            matches, _ = await find(self._listings(keep=False), select, Matcher(select, self.clock()),
                                    **self._walk_limits())
        except EfileMcpError:
            return 0
        planned = set(plan.path_set) | set(plan.covered)
        return sum(1 for m in matches if m.path not in planned and not any(
            m.path.startswith(p + "/") for p in _ancestors_in(m.path, planned)))

    # ------------------------------------------------------------------ tasks

    async def tasks(
        self, task_ids: Sequence[str] | None, plan_id: str | None, *, wait_seconds: float,
        progress: Progress | None = None,
    ) -> GetTaskResult:
        wanted = list(dict.fromkeys(task_ids or ()))
        if plan_id:
            data = await self.store.load_plan("run-" + plan_id)
            if data is None:
                raise GuardRefusal("unknown_plan", f"no execution of plan {plan_id!r} with server tasks is known here "
                                   "(it had none, or it is older than a day): pass task_ids instead.")
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
                await progress(ended + len(lookup.not_found), len(wanted), f"{ended} of {len(lookup.tasks)} tasks ended")
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
            all_terminal=all_terminal,
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
                await self.audit.write("cancel", tool="cancel_tasks", decision=f"requested, then {type(exc).__name__}",
                                       task_ids=running)
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
                items.append(CancelItem(task_id=task_id, cancelled=False, status=status_now, reason=(
                    f"the server reports {status_now or 'nothing'} after the cancel request; check with get_task")))
        await self.audit.write("cancel", tool="cancel_tasks", decision="requested" if running else "nothing_to_cancel",
                               task_ids=running, items=[item.model_dump(exclude_none=True) for item in items])
        return CancelTasksResult(tasks=items)


# ---------------------------------------------------------------------------------------------------


def _walk_progress(progress: Progress | None) -> Callable[[int, int], Awaitable[None]] | None:
    if progress is None:
        return None

    async def report(entries: int, folders: int) -> None:
        await progress(entries, None, f"{entries} entries in {folders} folders read")

    return report


def _non_overlapping_size(matches: Sequence[Any]) -> int:
    paths = {m.path for m in matches}
    return sum(m.size for m in matches if not _ancestors_in(m.path, paths))


def _ancestors_in(path: str, paths: set[str]) -> list[str]:
    found = []
    index = path.find("/", 1)
    while index != -1:
        if path[:index] in paths:
            found.append(path[:index])
        index = path.find("/", index + 1)
    return found


def _find_result(header: dict[str, Any], rows: list[list[Any]], offset: int, limit: int, search_id: str | None) -> FindPathsResult:
    page = rows[offset : offset + limit]
    end = offset + len(page)
    return FindPathsResult(
        path=header["path"],
        matches=[FindMatch(path=p, type=k, size=s, modified=iso_time(m)) for p, k, s, m in page],
        total_matches=header["total"],
        total_size=header["size"],
        complete=header["complete"],
        incomplete_reason=header["reason"],
        entries_seen=header["seen"],
        next_cursor=f"{search_id}:{end}" if search_id and end < len(rows) else None,
        unreadable_count=header["unreadable"] or None,
    )


def _covered_items(request: RemovalRequest, items: dict[str, RemoveItem]) -> list[RemoveItem]:
    """Paths the execution names inside a folder of the plan: they share the folder's fate, not sent themselves."""
    if request.paths is None:
        return []
    collapsed = collapse(dict.fromkeys(request.paths))
    return [
        items[outer].model_copy(update={
            "path": path, "reason": f"inside {display(outer)}, which this call removes; not sent separately",
            "type": None, "size": None, "file_count": None, "newest_modified": None, "task_id": None,
        })
        for path, outer in collapsed.covered.items() if outer in items
    ]


def _changed(what: str) -> str:
    return f"it changed since the dry run ({what}); not sent. Run a new dry run to see it as it is now."


def _difference(before: SeenPath, now: SeenPath) -> str:
    if before.kind != now.kind:
        return f"was a {before.kind}, is now a {now.kind}"
    if before.kind != "directory" and before.listed_size != now.listed_size:
        return f"size {before.listed_size} B, now {now.listed_size} B"
    return "its modification time changed"


def _item_from_outcome(outcome: RemoveOutcome, seen: SeenPath) -> RemoveItem:
    path = outcome.path
    sized: dict[str, Any] = {"type": seen.kind, "size": seen.size}
    if outcome.kind == "missing":
        return RemoveItem(path=path, status="missing", reason=outcome.message, error_code=outcome.error_code)
    if outcome.kind == "verified_absent":
        return RemoveItem(path=path, status="removed", reason=outcome.message, **sized)  # type: ignore[arg-type]
    if outcome.kind == "failed":
        return RemoveItem(path=path, status="failed", reason=outcome.message, error_code=outcome.error_code)
    if outcome.kind == "unknown":
        return RemoveItem(
            path=path, status="failed",
            error_code=f"outcome_unknown:{outcome.error_code}" if outcome.error_code else "outcome_unknown",
            reason=f"outcome unknown: {outcome.message}. Run a dry run on it to see whether it is still there.",
        )
    if outcome.kind == "not_sent":
        return RemoveItem(path=path, status="failed", error_code="not_sent", reason=f"not sent: {outcome.message}")
    task = outcome.task
    assert task is not None
    common: dict[str, Any] = {"path": path, "task_id": task.task_id, "task_status": task.status}
    if task.status == "complete":
        return RemoveItem(status="removed", **common, **sized)
    if task.status in ("waiting", "processing"):
        return RemoveItem(status="queued", reason="a server task is removing it; follow it with get_task",
                          **common, **sized)
    if task.error_code == "911020":
        return RemoveItem(status="missing", reason="already absent", error_code=task.error_code, **common)
    reason = task.error_msg or ("cancelled" if task.status == "cancel" else "the server reported a failure")
    return RemoveItem(status="failed", reason=reason, error_code=task.error_code, **common)


def _next_step_after_execution(summary: Any, plan_id: str, tasks: int, not_previewed: int | None) -> str:
    steps = []
    if summary.queued:
        how = "task_ids" if tasks <= ITEMS_LISTED_MAX else f"plan_id={plan_id!r}"
        steps.append(f"{summary.queued} path(s) are queued: call get_task with {how} and wait_seconds to follow them")
    if summary.failed:
        steps.append(f"{summary.failed} path(s) failed: see each item's reason")
    if summary.changed:
        steps.append(f"{summary.changed} path(s) changed since the dry run and were not sent: dry-run them again")
    if not_previewed:
        steps.append(f"{not_previewed} path(s) now match the selection that the dry run did not show; they were not "
                     "removed (run a new dry run to see them)")
    if not steps:
        return "Done: every confirmed path is removed or was already absent."
    return "; ".join(steps) + "."


def _auth_stopped(error: EfileMcpError, run: RemovalRun, task_ids: list[str], audit: AuditLog) -> str:
    kinds = Counter(outcome.kind for outcome in run.outcomes.values())
    shown = task_ids[:_TASK_IDS_IN_ERRORS]
    return (
        f"{error} The removal stopped: {kinds['submitted']} path(s) had already been submitted"
        + (f" (task ids: {', '.join(shown)}{' …' if len(task_ids) > len(shown) else ''}; follow them "
           "with get_task)" if task_ids else "")
        + f", {kinds['not_sent']} were not sent"
        + (f", {kinds['unknown']} have an unknown outcome (an answer was lost)" if kinds["unknown"] else "")
        + (f", {kinds['missing'] + kinds['verified_absent']} were already absent"
           if kinds["missing"] + kinds["verified_absent"] else "")
        + (f", {kinds['failed']} failed" if kinds["failed"] else "")
        + f". Every path's state is in the audit log ({audit.path}). Dry-run again after fixing the token."
    )


def _audit_item(item: RemoveItem) -> dict[str, object]:
    record: dict[str, object] = {"path": item.path[:MAX_PATH_BYTES], "status": item.status}
    if item.task_id:
        record["task_id"] = item.task_id
    if item.error_code:
        record["error_code"] = item.error_code
    if item.status in ("refused", "failed", "changed") and item.reason:
        record["reason"] = item.reason[:300]
    return record


__all__ = ["Guard", "GuardRefusal", "RemovalRequest", "expand_home"]
