"""Removal into a quarantine the person can restore from, and the purge that ends it.

Layout: each path goes into the quarantine of **its own allowed root** (the innermost root holding it),
into the plan's folder, at the same place relative to the root:

    <root>/a/b/run-001            ->  <root>/.efile-quarantine/<plan id>/a/b/run-001
    <root>/.efile-quarantine/<plan id>.manifest.json     (beside the plan's folder, uploaded after the moves)

So no data crosses a root, the path policy still holds, two paths with the same base name go to
distinct sub-folders (their parents differ), and **where an entry came from is derivable from the layout
alone**: strip `.efile-quarantine/<plan id>/`. Restoring needs neither the state store nor the manifest.
The manifest (original paths, types, sizes, when, plan id) is for the person and the audit; the state
store keeps the same record to answer storage_status without walking, and to tell an entry that was
quarantined whole from a folder made only to hold it.

A move carries its sources comma-separated, so a path holding a comma is never sent: it is refused with
a reason (`quarantine_refusal`), before the dry run issues a token and again here.

Restore and purge ask no one, so they trust nothing placed in the quarantine since: a restore never puts
anything under a protected name, outside a root or through a link on the way, nor a link that was not
quarantined inside its folder; a purge never deletes a plan holding symbolic links unless
EFILE_LINKS_INSIDE=remove; and a `.efile-quarantine` that is not a real folder (a link swapped in) is
never moved into, restored from or purged.

Every path ends in one known state. A batch the server refused (911021, 911020, ...) or whose answer was
lost (a timeout after sending) is never resent blind: the source folder and the quarantine folder are
listed, what moved is `quarantined`, and only what a listing shows still in place is sent again, alone,
after a refusal (a lost answer leaves it in place, `failed`, nothing lost).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ..client._groups import task_group
from ..client.mover import EfileMover, move_batches
from ..client.remover import EfileRemover, RemovalRun
from ..client.walk import Entry, Listings, join
from ..errors import ApiError, AuthError, EfileMcpError, NotFoundError, error_code_of, outcome_unknown
from ..models.quarantine_results import (
    QuarantinedPlan,
    QuarantineStatus,
    RestoreItem,
    RestorePathsResult,
    RestoreSummary,
)
from ..models.results import ITEMS_LISTED_MAX, RemoveItem
from ..models.times import iso_time
from .audit import AuditLog
from .paths import PathPolicy, PathRefusal, display, is_within
from .requests import GuardRefusal, Progress
from .seen import SeenPath

if TYPE_CHECKING:
    from .store import StateStore

__all__ = [
    "MANIFEST_SUFFIX",
    "QUARANTINE_DIR",
    "PurgeReport",
    "Quarantine",
    "is_quarantine_path",
    "quarantine_refusal",
]

log = logging.getLogger("efile_mcp.guard.quarantine")

#: The folder, in each allowed root, that holds quarantined plans.
QUARANTINE_DIR = ".efile-quarantine"
MANIFEST_SUFFIX = ".manifest.json"
DAY = 86400.0
#: The state store keeps a plan's record this long after it expires (purge reads it).
_RECORD_GRACE = 30 * DAY
#: Entries read at most when a plan's size must be measured by walking (no record in the state store).
_SIZE_WALK_MAX = 50_000

MoveKind = Literal["moved", "source_missing", "target_taken", "failed"]
_ABSENT = "absent"
#: Policy refusals that make one restore item fail (it stays in quarantine); any other refuses the whole call.
_RESTORE_PER_PATH = frozenset({"outside_allowed_roots", "no_allowed_roots", "protected"})


def is_quarantine_path(path: str) -> bool:
    """Whether `path` is a quarantine folder or lies inside one."""
    return QUARANTINE_DIR in path.split("/")


def quarantine_refusal(path: str) -> str | None:
    """Why `path` cannot be quarantined (None: it can). Checked at the dry run and again when sending."""
    if "," in path:
        return (
            "its path holds a comma, and file/move carries its sources comma-separated: the storage would read "
            "two paths. It is not quarantined; remove it with mode='delete' (permanent), or rename it without "
            "the comma and dry-run again."
        )
    if is_quarantine_path(path):
        return (
            f"it is in a quarantine ({QUARANTINE_DIR}): a quarantine is never quarantined again; removing it "
            "is permanent (mode='delete'), or restore it with restore_paths."
        )
    return None


def innermost_root(policy: PathPolicy, path: str) -> str | None:
    inside = [root for root in policy.allowed_roots if is_within(path, root)]
    return max(inside, key=len) if inside else None


def quarantine_folder(root: str) -> str:
    return join(root, QUARANTINE_DIR)


def plan_folder(root: str, plan_id: str) -> str:
    return join(quarantine_folder(root), plan_id)


def mirror_of(root: str, plan_id: str, original: str) -> str:
    """Where `original` lies in the plan's quarantine."""
    return plan_folder(root, plan_id) + original[len(root.rstrip("/")) :]


def parent_of(path: str) -> str:
    return path.rpartition("/")[0] or "/"


@dataclass(frozen=True, slots=True)
class MoveState:
    kind: MoveKind
    message: str | None = None
    error_code: str | None = None


@dataclass
class PlanRecord:
    """What the state store keeps of a quarantined plan: when, and per root the paths sent [path, kind, size, files]."""

    plan_id: str
    when: float
    roots: dict[str, list[list[Any]]] = field(default_factory=dict)
    #: The expiry promised when it was quarantined (its answer and manifest say it): a process configured with
    #: fewer EFILE_QUARANTINE_DAYS (a cron job, another client's server) never purges it sooner.
    expires: float | None = None

    def to_bytes(self) -> bytes:
        body = {"v": 1, "id": self.plan_id, "t": self.when, "r": self.roots, "x": self.expires}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")

    @classmethod
    def from_bytes(cls, data: bytes) -> PlanRecord:
        raw = json.loads(data.decode("utf-8", "surrogatepass"))
        promised = raw.get("x")
        return cls(
            str(raw["id"]),
            float(raw["t"]),
            {str(k): [list(r) for r in v] for k, v in raw["r"].items()},
            float(promised) if isinstance(promised, int | float) else None,
        )


@dataclass
class PurgeReport:
    """What a purge did (or, as a dry run, would do)."""

    dry_run: bool
    expired: list[QuarantinedPlan] = field(default_factory=list)
    kept: int = 0
    #: Expired plans not purged, and why (symbolic links inside, without EFILE_LINKS_INSIDE=remove).
    held: dict[str, str] = field(default_factory=dict)
    #: Per plan folder: "removed", "queued" (a server task deletes it), or "failed: why".
    outcomes: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        shown = []
        for plan in self.expired:
            outcome = "" if self.dry_run else f" ({self.outcomes.get(plan.folder, 'not sent')})"
            shown.append(
                f"{verb} {plan.folder}: {plan.count} path(s), {plan.size} bytes, quarantined "
                f"{plan.quarantined_at or 'at an unknown time'}{outcome}"
            )
        total = sum(plan.size for plan in self.expired)
        summary = (
            f"{len(self.expired)} expired plan(s), {total} bytes {'to purge' if self.dry_run else 'purged'}; "
            f"{self.kept} plan(s) kept (not expired)"
        )
        kept = [f"kept {folder} although expired: {why}" for folder, why in self.held.items()]
        return [*shown, *kept, summary, *([f"error: {self.error}"] if self.error else [])]


class Quarantine:
    """Moves paths into their root's quarantine, lists what is there, restores it, and purges what expired."""

    def __init__(
        self,
        mover: EfileMover,
        listings: Callable[[], Listings],
        policy: PathPolicy | Callable[[], PathPolicy],
        audit: AuditLog,
        *,
        store: StateStore | None = None,
        remover: EfileRemover | None = None,
        days: int = 7,
        clock: Callable[[], float] | None = None,
        concurrency: int | None = None,
        ready: Callable[[], Awaitable[None]] | None = None,
        links_inside: Literal["refuse", "remove"] = "refuse",
    ) -> None:
        self.mover = mover
        self._listings = listings
        self._policy = policy
        self.audit = audit
        self.store = store
        self.remover = remover
        self.days = days
        self.clock = clock or time.time
        self.concurrency = concurrency or mover.concurrency
        #: Resolves the allowed roots first ('~' roots need the home the SCNet center reports).
        self._ready = ready
        #: EFILE_LINKS_INSIDE: a purge deletes a plan holding symbolic links only with "remove".
        self.links_inside = links_inside

    @property
    def policy(self) -> PathPolicy:
        return self._policy if isinstance(self._policy, PathPolicy) else self._policy()

    # ------------------------------------------------------------------ send

    async def send(
        self, plan_id: str, paths: Sequence[SeenPath], progress: Progress | None = None
    ) -> dict[str, RemoveItem]:
        """Move each path into its root's quarantine; every path gets one item: quarantined, missing, changed
        (left to the caller) or failed. Raises AuthError only before anything was moved."""
        items: dict[str, RemoveItem] = {}
        by_root: dict[str, list[SeenPath]] = {}
        for seen in paths:
            root = innermost_root(self.policy, seen.path)
            reason = quarantine_refusal(seen.path) or (None if root else "it is not inside an allowed root.")
            if reason is not None or root is None:
                items[seen.path] = RemoveItem(
                    path=seen.path, status="failed", error_code="not_quarantinable", reason=reason
                )
                continue
            by_root.setdefault(root, []).append(seen)
        listings = self._listings()
        #: Roots whose plan folder existed before this send (a resumed execution, or something put there):
        #: every folder on the way to a target is then checked to be a real folder before anything moves.
        pre_existing: set[str] = set()
        for root in list(by_root):
            problem = await self._not_a_real_folder(root, listings)
            if problem is None:
                held = await self._listings().entry(plan_folder(root, plan_id))
                if held is not None and held.kind != "directory":
                    problem = (
                        f"{display(plan_folder(root, plan_id))} is a {held.kind}, not a folder: nothing is moved "
                        "into it (a link there would carry the data wherever it points)"
                    )
                elif held is not None:
                    pre_existing.add(root)
            if problem is not None and problem != _ABSENT:
                for seen in by_root.pop(root):
                    items[seen.path] = RemoveItem(
                        path=seen.path, status="failed", error_code="quarantine_unusable", reason=problem
                    )
        if not by_root:
            return items
        # A resumed execution (its first replica died) adds to what the interrupted one moved: the plan's record
        # keeps both, so restore_paths(plan_id) brings back everything, and the plan keeps its first date.
        earlier = await self._record(plan_id)
        when = earlier.when if earlier is not None else self.clock()
        record = PlanRecord(
            plan_id,
            when,
            {root: [[s.path, s.kind, s.size, s.file_count] for s in group] for root, group in by_root.items()},
            max(when + self.days * DAY, earlier.expires or 0.0) if earlier is not None else when + self.days * DAY,
        )
        if self.store is not None:
            try:
                await self.store.save_plan(
                    self._record_key(plan_id),
                    _with_earlier(record, earlier, paths).to_bytes(),
                    self._record_expiry(when),
                )
            except EfileMcpError as exc:  # the layout alone still says where everything came from
                log.warning("the quarantine record of plan %s could not be kept (%s)", plan_id, exc)
        pairs: dict[str, str] = {}
        for root, group in by_root.items():
            for seen in group:
                pairs[seen.path] = parent_of(mirror_of(root, plan_id, seen.path))
        total = len(pairs)
        done = 0

        async def moved_some(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                await progress(done, total, f"{done} of {total} path(s) moved to quarantine")

        async def real_folders(target: str) -> str | None:
            root = next((r for r in pre_existing if target.startswith(plan_folder(r, plan_id) + "/")), None)
            return None if root is None else await self._link_below(plan_folder(root, plan_id), target)

        states = await self._move_all(pairs, on_batch=moved_some, verify=real_folders if pre_existing else None)
        by_path = {seen.path: seen for seen in paths}
        for path, state in states.items():
            seen = by_path[path]
            sized: dict[str, Any] = {"type": seen.kind, "size": seen.size}
            if state.kind == "moved":
                root = innermost_root(self.policy, path)
                assert root is not None
                items[path] = RemoveItem(
                    path=path,
                    status="quarantined",
                    reason=f"in {display(mirror_of(root, plan_id, path))}; restore_paths puts it back"
                    + (f" ({state.message})" if state.message else ""),
                    **sized,
                )
            elif state.kind == "source_missing":
                items[path] = RemoveItem(path=path, status="missing", reason=state.message or "already absent")
            else:
                items[path] = RemoveItem(
                    path=path,
                    status="failed",
                    error_code=state.error_code,
                    reason=(state.message or "not moved") + "; it is still where it was",
                )
        with anyio.CancelScope(shield=True):
            # The record keeps what is in quarantine now: a path that was not moved is not the plan's to restore.
            record.roots = {
                root: [row for row in rows if items[row[0]].status == "quarantined"]
                for root, rows in record.roots.items()
            }
            merged = _with_earlier(record, earlier, paths)
            if self.store is not None:
                try:
                    await self.store.save_plan(self._record_key(plan_id), merged.to_bytes(), self._record_expiry(when))
                except EfileMcpError as exc:
                    log.warning("the quarantine record of plan %s could not be updated (%s)", plan_id, exc)
            # Every path of the plan in quarantine so far: an execution sends a big plan in batches, and a resumed
            # one adds to what the interrupted one moved; each manifest is rewritten whole.
            await self._write_manifests(plan_id, when, {root: merged.roots.get(root, []) for root in by_root})
        return items

    async def _write_manifests(self, plan_id: str, when: float, by_root: dict[str, list[list[Any]]]) -> None:
        for root, rows in by_root.items():
            entries = [
                {
                    "path": path,
                    "type": kind,
                    "size": size,
                    "files": files,
                    "quarantined_as": mirror_of(root, plan_id, path),
                }
                for path, kind, size, files in rows
            ]
            if not entries:
                continue
            manifest = {
                "plan_id": plan_id,
                "root": root,
                "quarantined_at": iso_time(when),
                "expires_at": iso_time(when + self.days * DAY),
                "how_to_restore": "move each entry back to `path` (restore_paths does it), or strip "
                f"'{QUARANTINE_DIR}/{plan_id}/' from its place",
                "entries": entries,
            }
            content = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass")
            try:
                await self.mover.upload(quarantine_folder(root), plan_id + MANIFEST_SUFFIX, content)
            except EfileMcpError as exc:  # the layout and the state store still say everything
                log.warning("the manifest of plan %s in %s could not be written (%s)", plan_id, root, exc)

    # ------------------------------------------------------------------ moving, reconciled

    async def _move_all(
        self,
        pairs: dict[str, str],
        *,
        on_batch: Callable[[int], Awaitable[None]] | None = None,
        verify: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> dict[str, MoveState]:
        """Move each source into its target folder; every source ends in one MoveState.

        Target folders are made first (mkdir -p); a batch per target folder and at most 100 sources.
        An AuthError stops new batches; what was not sent is `failed` (not sent), never lost.
        """
        states: dict[str, MoveState] = {}
        by_target: dict[str, list[str]] = {}
        for source, target in pairs.items():
            by_target.setdefault(target, []).append(source)
        slots = anyio.Semaphore(self.concurrency)
        stopped: list[AuthError] = []

        async def folder(target: str) -> None:
            async with slots:
                if stopped:
                    return
                try:
                    await self.mover.mkdir(target, create_parents=True)
                except AuthError as exc:
                    stopped.append(exc)
                    return
                except EfileMcpError as exc:
                    for source in by_target[target]:
                        states[source] = MoveState(
                            "failed", f"its quarantine folder could not be made ({exc})", error_code_of(exc)
                        )
                    return
                problem = await verify(target) if verify is not None else None
                if problem is not None:
                    for source in by_target[target]:
                        states[source] = MoveState("failed", problem, "quarantine_unusable")
                    return
            async with task_group() as inner:
                for batch in move_batches(by_target[target]):
                    inner.start_soon(one_batch, batch, target)

        async def one_batch(batch: list[str], target: str) -> None:
            async with slots:
                if stopped:
                    return
                try:
                    found = await self._move_batch(batch, target)
                except AuthError as exc:
                    stopped.append(exc)
                    return
                states.update(found)
            if on_batch is not None:
                await on_batch(len(batch))

        async with task_group() as tg:
            for target in by_target:
                tg.start_soon(folder, target)
        for source in pairs:
            if source not in states:
                why = f"not sent: the API refused the token ({stopped[0]})" if stopped else "not sent"
                states[source] = MoveState("failed", why, "not_sent")
        return states

    async def _move_batch(self, batch: list[str], target: str) -> dict[str, MoveState]:
        try:
            await self.mover.move(batch, target)
        except AuthError:
            raise
        except ApiError as exc:
            if len(batch) == 1:
                return {batch[0]: _refused_alone(exc)}
            return await self._reconcile(batch, target, exc, resend=True)
        except EfileMcpError as exc:
            if outcome_unknown(exc):
                return await self._reconcile(batch, target, exc, resend=False)
            return {
                source: MoveState("failed", f"not moved: the server turned the move away ({exc})", error_code_of(exc))
                for source in batch
            }
        return {source: MoveState("moved") for source in batch}

    async def _reconcile(
        self, batch: list[str], target: str, exc: EfileMcpError, *, resend: bool
    ) -> dict[str, MoveState]:
        """List both places to learn what the failed (or unanswered) move did; never guess, never resend blind."""
        destinations = {source: join(target, source.rpartition("/")[2]) for source in batch}
        try:
            found = await self._listings().entries([*batch, *destinations.values()])
        except AuthError:
            raise
        except EfileMcpError as listing_error:
            found = dict.fromkeys([*batch, *destinations.values()], listing_error)
        states: dict[str, MoveState] = {}
        again: list[str] = []
        for source in batch:
            at_source, at_target = found.get(source), found.get(destinations[source])
            if isinstance(at_source, EfileMcpError) or isinstance(at_target, EfileMcpError):
                states[source] = MoveState(
                    "failed", f"outcome unknown ({exc}) and the places could not be listed to check", "outcome_unknown"
                )
            elif at_source is not None:
                if resend:  # refused: the listing shows it still in place, so it goes again, alone
                    again.append(source)
                elif at_target is not None:
                    states[source] = MoveState(
                        "failed",
                        f"the move's answer was lost ({exc}); an entry is still at its path and one with its name is in "
                        "quarantine, so it is left as it is: check both before removing it again",
                        "outcome_unknown",
                    )
                else:
                    states[source] = MoveState(
                        "failed",
                        f"the move's answer was lost ({exc}); a listing shows it still in place, so nothing was moved. "
                        "Dry-run it again to retry",
                        "outcome_unknown",
                    )
            elif at_target is not None:
                states[source] = MoveState("moved", f"confirmed by listing after: {exc}")
            elif resend and isinstance(exc, ApiError) and exc.code == "911020":
                states[source] = MoveState("source_missing", "already absent")
            else:
                states[source] = MoveState(
                    "failed",
                    f"outcome unknown ({exc}): it is neither where it was nor in quarantine; check the audit log",
                    "outcome_unknown",
                )
        for source in again:  # a listing shows it still in place: sending it alone is not blind
            states.update(await self._move_batch([source], target))
        return states

    # ------------------------------------------------------------------ what is there

    def _record_key(self, plan_id: str) -> str:
        return "quarantine-" + plan_id

    def _record_expiry(self, when: float) -> float:
        return when + self.days * DAY + _RECORD_GRACE

    async def _record(self, plan_id: str) -> PlanRecord | None:
        if self.store is None:
            return None
        try:
            data = await self.store.load_plan(self._record_key(plan_id))
        except EfileMcpError:
            return None
        return PlanRecord.from_bytes(data) if data else None

    async def list_plans(self) -> list[QuarantinedPlan]:
        """Every plan in the quarantine of every allowed root, newest first."""
        plans, _ = await self._plans()
        return plans

    async def _plans(self) -> tuple[list[QuarantinedPlan], str | None]:
        if self._ready is not None:
            await self._ready()
        listings = self._listings()
        plans: list[QuarantinedPlan] = []
        budget = [_SIZE_WALK_MAX]  # entries the plans without a record may still cost, all of them together
        errors: list[str] = []

        async def in_root(root: str) -> None:
            folder = quarantine_folder(root)
            problem = await self._not_a_real_folder(root, listings)
            if problem is not None:
                if problem != _ABSENT:
                    errors.append(problem)
                return
            try:
                listing = await listings.read_dir(folder)
            except NotFoundError:
                return
            except AuthError:
                raise
            except EfileMcpError as exc:
                errors.append(f"{display(folder)}: {exc}")
                return
            for name, entry in listing.entries.items():
                if entry.kind == "directory":
                    manifest = listing.entries.get(name + MANIFEST_SUFFIX)
                    plans.append(await self._describe(root, name, entry, manifest, budget))

        async with task_group() as tg:
            for root in self.policy.allowed_roots:
                tg.start_soon(in_root, root)
        plans.sort(key=lambda plan: (plan.quarantined_at or "", plan.plan_id), reverse=True)
        return plans, "; ".join(errors) or None

    async def _describe(
        self, root: str, plan_id: str, entry: Entry, manifest: Entry | None, budget: list[int]
    ) -> QuarantinedPlan:
        record = await self._record(plan_id)
        when = record.when if record else (manifest.mtime if manifest and manifest.mtime else entry.mtime)
        exact = True
        if record is not None and root in record.roots:
            rows = record.roots[root]
            count, size = len(rows), sum(int(row[2]) for row in rows)
        else:
            count, size, exact = await self._measure(plan_folder(root, plan_id), budget)
        expires = when + self.days * DAY if when is not None else None
        if expires is not None and record is not None and record.expires is not None:
            expires = max(expires, record.expires)  # never sooner than promised when it was quarantined
        return QuarantinedPlan(
            plan_id=plan_id,
            root=root,
            folder=plan_folder(root, plan_id),
            quarantined_at=iso_time(when),
            expires_at=iso_time(expires),
            expired=expires is not None and expires <= self.clock(),
            count=count,
            size=size,
            exact=exact,
        )

    async def _links_inside(self, folder: str) -> str | None:
        """Why an expired plan may not be deleted for good: it holds a symbolic link (or could not be read whole)."""
        listings = self._listings()
        pending, seen = [folder], 0
        while pending:
            current = pending.pop()
            try:
                listing = await listings.read_dir(current)
            except AuthError:
                raise
            except EfileMcpError as exc:
                return f"it could not be read whole ({exc}), so it may hold symbolic links"
            if not listing.complete:
                return "it could not be read whole, so it may hold symbolic links"
            for name, child in listing.entries.items():
                seen += 1
                if child.kind == "symlink":
                    return (
                        f"it holds the symbolic link {display(join(current, name))}: its permanent removal stays refused "
                        "unless EFILE_LINKS_INSIDE=remove (the storage removes links as links); restore it, or remove "
                        "the links by hand"
                    )
                if child.kind == "directory":
                    pending.append(join(current, name))
            if seen > _SIZE_WALK_MAX * 4:
                return "it holds too many entries to be checked for symbolic links"
        return None

    async def _measure(self, folder: str, budget: list[int]) -> tuple[int, int, bool]:
        """(files, bytes, read whole) of a plan folder, by walking it (no record in the state store), within the
        entries `budget[0]` one look at the quarantine may still read: many unrecorded plans stay one quick look."""
        listings = self._listings()
        files = size = 0
        pending = [folder]
        while pending:
            if budget[0] <= 0:
                return files, size, False
            current = pending.pop()
            try:
                listing = await listings.read_dir(current)
            except AuthError:
                raise
            except EfileMcpError:
                return files, size, False
            for name, child in listing.entries.items():
                budget[0] -= 1
                if child.kind == "directory":
                    pending.append(join(current, name))
                elif child.kind == "file":
                    files += 1
                    size += child.size
            if not listing.complete:
                return files, size, False
        return files, size, True

    async def status(self) -> QuarantineStatus:
        plans, error = await self._plans()
        return QuarantineStatus(
            plans=plans[:ITEMS_LISTED_MAX],
            plan_count=len(plans),
            total_count=sum(plan.count for plan in plans),
            total_size=sum(plan.size for plan in plans),
            days=self.days,
            error=error,
        )

    # ------------------------------------------------------------------ restore

    async def restore(self, plan_id: str, paths: Sequence[str] | None = None) -> RestorePathsResult:
        """Move a plan's entries back where they were, never over anything (uncover): a path that exists
        again is a `conflict` and stays in quarantine. Audited before anything moves, and after."""
        if not plan_id or "/" in plan_id or plan_id in (".", "..") or is_quarantine_path(plan_id) or "," in plan_id:
            raise GuardRefusal("unknown_plan", f"{plan_id!r} is not a plan id: give the plan_id a removal answered.")
        if self._ready is not None:
            await self._ready()
        listings = self._listings()
        roots = await self._roots_holding(plan_id, listings)
        if not roots:
            await self.audit.write(
                "refusal", tool="restore_paths", decision="refused", reason="unknown_plan", plan_id=plan_id[:64]
            )
            raise GuardRefusal(
                "unknown_plan",
                f"no quarantine holds plan {plan_id!r} (it was never quarantined here, was purged, or was restored "
                "whole): storage_status lists the plans in quarantine.",
            )
        record = await self._record(plan_id)
        recorded = {row[0] for rows in (record.roots.values() if record else ()) for row in rows}
        wanted: list[tuple[str, str]] = []  # (root, original)
        items: dict[str, RestoreItem] = {}
        if paths is None:
            for root in roots:
                if record is not None and root in record.roots:
                    wanted.extend((root, row[0]) for row in record.roots[root])
                else:
                    top = await listings.read_dir(plan_folder(root, plan_id))
                    wanted.extend((root, join(root, name)) for name in top.entries)
        else:
            unfit = [p for p in paths if self._malformed(p)]
            if unfit:
                raise GuardRefusal(
                    "restore_paths",
                    f"{self._malformed(unfit[0])} Nothing was restored: name each path as the removal showed it.",
                )
            for path in dict.fromkeys(paths):
                holder = innermost_root(self.policy, path)
                if holder is None or holder not in roots:
                    items[path] = RestoreItem(
                        path=path, status="missing", reason="not in this plan's quarantine (no such root holds it)."
                    )
                else:
                    wanted.append((holder, path))
        await self.audit.write(
            "restore",
            tool="restore_paths",
            decision="intent",
            plan_id=plan_id,
            paths=[original for _, original in wanted][:200],
            paths_count=len(wanted),
        )
        results = await self._restore_entries(plan_id, wanted, recorded, listings)
        items.update(results)
        ordered = list(items.values())
        if record is not None:
            restored = {item.path for item in ordered if item.status == "restored"}
            await self._forget(record, restored)
        emptied = [root for root in roots if await self._drop_if_empty(root, plan_id)]
        await self.audit.write(
            "restore",
            tool="restore_paths",
            decision="executed",
            plan_id=plan_id,
            emptied=[plan_folder(root, plan_id) for root in emptied],
            items=[
                {
                    "path": i.path,
                    "status": i.status,
                    **({"reason": i.reason[:300]} if i.reason and i.status != "restored" else {}),
                }
                for i in ordered
            ][:2000],
        )
        summary = RestoreSummary(requested=len(ordered))
        for item in ordered:
            setattr(summary, item.status, getattr(summary, item.status) + 1)
        listed = ordered if len(ordered) <= ITEMS_LISTED_MAX else None
        exceptions = None if listed is not None else [i for i in ordered if i.status != "restored"][:ITEMS_LISTED_MAX]
        steps = []
        if summary.restored:
            steps.append(f"{summary.restored} path(s) are back where they were")
        if summary.conflict:
            steps.append(
                f"{summary.conflict} path(s) exist again and were left in quarantine: move or remove what is there now, "
                "then call restore_paths again for them"
            )
        if summary.failed:
            steps.append(f"{summary.failed} path(s) failed (see reason): they are still in quarantine")
        if summary.missing:
            steps.append(f"{summary.missing} path(s) are not in this plan's quarantine")
        return RestorePathsResult(
            plan_id=plan_id,
            summary=summary,
            items=listed,
            exceptions=exceptions,
            next_step=("; ".join(steps) or "Nothing to restore.") + ".",
        )

    def _malformed(self, path: str) -> str | None:
        """Why a path named for restore is not a plain absolute path ('..', '//', control characters...)."""
        verdict = self.policy.check(path)
        if isinstance(verdict, PathRefusal) and verdict.code not in _RESTORE_PER_PATH:
            return verdict.message
        return None

    def _unrestorable(self, path: str) -> str | None:
        """Why an entry may not go back to `path` now (a protected name, outside the roots, a comma): it stays."""
        verdict = self.policy.check(path)
        if isinstance(verdict, PathRefusal):
            return f"{verdict.message} It stays in quarantine."
        if "," in path:  # never quarantined so (quarantine_refusal): placed here, and a move would split it
            return (
                "its path holds a comma, and file/move carries its sources comma-separated: the storage would read "
                "two paths. It stays in quarantine; move it back by hand if it is yours."
            )
        return None

    async def _link_below(self, top: str, target: str) -> str | None:
        """Why `target` may not receive data: some folder between `top` (excluded) and it is not a real folder."""
        rest = target[len(top) + 1 :].split("/") if target != top else []
        chain = [top + "/" + "/".join(rest[: i + 1]) for i in range(len(rest))]
        found = await self._listings().entries(chain)
        for prefix in chain:
            entry = found.get(prefix)
            if entry is None or isinstance(entry, EfileMcpError) or entry.kind != "directory":
                what = (
                    "could not be checked"
                    if entry is None or isinstance(entry, EfileMcpError)
                    else f"is a {entry.kind}"
                )
                return f"{display(prefix)} {what}, not a real folder: nothing is moved into it"
        return None

    async def _not_a_real_folder(self, root: str, listings: Listings) -> str | None:
        """None when <root>/.efile-quarantine is a real folder; `_ABSENT` when there is none; else why it is not
        used: a symbolic link there would carry moves, restores and purges wherever it points."""
        try:
            entry = await listings.entry(quarantine_folder(root))
        except AuthError:
            raise
        except EfileMcpError as exc:
            return f"{display(quarantine_folder(root))} could not be checked ({exc})"
        if entry is None:
            return _ABSENT
        if entry.kind != "directory":
            return (
                f"{display(quarantine_folder(root))} is a {entry.kind}, not a folder: nothing is moved into, restored "
                "from or purged in it; ask the person to look at it"
            )
        return None

    async def _roots_holding(self, plan_id: str, listings: Listings) -> list[str]:
        found: list[str] = []
        for root in self.policy.allowed_roots:
            if await self._not_a_real_folder(root, listings) is not None:
                continue
            entry = await listings.entry(plan_folder(root, plan_id))
            if entry is not None and entry.kind == "directory":
                found.append(root)
        return found

    async def _restore_entries(
        self, plan_id: str, wanted: list[tuple[str, str]], recorded: set[str], listings: Listings
    ) -> dict[str, RestoreItem]:
        items: dict[str, RestoreItem] = {}
        to_move: dict[str, str] = {}  # mirror -> original parent
        originals: dict[str, str] = {}  # mirror -> original
        pending = list(wanted)
        while pending:
            batch, pending = pending[:500], pending[500:]
            mirrors = {original: mirror_of(root, plan_id, original) for root, original in batch}
            found = await listings.entries([*mirrors, *mirrors.values()])
            for root, original in batch:
                mirror = mirrors[original]
                in_quarantine, there_now = found.get(mirror), found.get(original)
                refusal = self._unrestorable(original)
                if refusal is not None:
                    # Restore asks no one: it never puts anything under a protected name or outside a root,
                    # whatever was placed in the quarantine folder.
                    items[original] = RestoreItem(path=original, status="failed", reason=refusal, quarantined_as=mirror)
                elif isinstance(in_quarantine, EfileMcpError) or isinstance(there_now, EfileMcpError):
                    error = in_quarantine if isinstance(in_quarantine, EfileMcpError) else there_now
                    items[original] = RestoreItem(
                        path=original, status="failed", reason=f"could not be checked ({error})", quarantined_as=mirror
                    )
                elif in_quarantine is None:
                    items[original] = RestoreItem(
                        path=original, status="missing", reason="not in this plan's quarantine"
                    )
                elif in_quarantine.kind == "symlink" and original not in recorded:
                    # remove_paths never quarantines a link by itself (links move only inside their folder):
                    # one lying here on its own was put here, and goes nowhere by a restore nobody confirms.
                    items[original] = RestoreItem(
                        path=original,
                        status="failed",
                        reason="it is a symbolic link this plan did not quarantine by itself; it stays in quarantine",
                        quarantined_as=mirror,
                    )
                elif there_now is None:
                    blocked = await self._link_on_the_way(root, original, listings)
                    if blocked:
                        items[original] = RestoreItem(
                            path=original, status="failed", reason=blocked, quarantined_as=mirror
                        )
                    else:
                        to_move[mirror] = parent_of(original)
                        originals[mirror] = original
                elif original in recorded or there_now.kind != "directory" or in_quarantine.kind != "directory":
                    items[original] = RestoreItem(
                        path=original,
                        status="conflict",
                        reason="something is at this path again; it was left in quarantine (nothing is overwritten)",
                        quarantined_as=mirror,
                    )
                else:
                    # A folder made only to hold quarantined entries, and the original folder exists: merge inside.
                    inner = await listings.read_dir(mirror)
                    pending.extend((root, join(original, name)) for name in inner.entries)
        if to_move:
            states = await self._move_all(to_move)
            for mirror, state in states.items():
                original = originals[mirror]
                if state.kind == "moved":
                    items[original] = RestoreItem(path=original, status="restored", quarantined_as=None)
                elif state.kind == "target_taken":
                    items[original] = RestoreItem(
                        path=original,
                        status="conflict",
                        reason="something appeared at this path meanwhile; it was left in quarantine",
                        quarantined_as=mirror,
                    )
                elif state.kind == "source_missing":
                    items[original] = RestoreItem(path=original, status="missing", reason="no longer in quarantine")
                else:
                    items[original] = RestoreItem(
                        path=original, status="failed", reason=state.message, quarantined_as=mirror
                    )
        return items

    async def _link_on_the_way(self, root: str, original: str, listings: Listings) -> str | None:
        """A restore must not move data through a link put on the way since (it could lead out of the root)."""
        rest = original[len(root.rstrip("/")) + 1 :].split("/")[:-1]
        chain = [root.rstrip("/") + "/" + "/".join(rest[: i + 1]) for i in range(len(rest))]
        if not chain:
            return None
        found = await listings.entries(chain)
        for prefix in chain:
            entry = found.get(prefix)
            if isinstance(entry, EfileMcpError):
                return f"its parent {display(prefix)} could not be checked ({entry}); it stays in quarantine"
            if entry is not None and entry.kind != "directory":
                return f"its parent {display(prefix)} is now a {entry.kind}, not a folder; it stays in quarantine"
        return None

    async def _drop_if_empty(self, root: str, plan_id: str) -> bool:
        """Once everything is restored, the plan's folder holds only the folders made to hold entries: it and its
        manifest are removed, so storage_status no longer lists it. Anything else left in it keeps it all."""
        if self.remover is None:
            return False
        folder = plan_folder(root, plan_id)
        listings = self._listings()
        pending, folders = [folder], 0
        while pending:
            current = pending.pop()
            try:
                listing = await listings.read_dir(current)
            except EfileMcpError:
                return False
            if not listing.complete:
                return False
            for name, child in listing.entries.items():
                if child.kind != "directory":
                    return False
                folders += 1
                if folders > 10_000:
                    return False
                pending.append(join(current, name))
        run = RemovalRun(paths=(folder, folder + MANIFEST_SUFFIX))
        try:
            await self.remover.remove(run)
        except EfileMcpError as exc:
            log.info("the emptied quarantine folder %s was not removed (%s)", folder, exc)
            return False
        run.settle_unfinished()
        return run.outcomes[folder].kind in ("submitted", "missing", "verified_absent")

    async def _forget(self, record: PlanRecord, restored: set[str]) -> None:
        if not restored or self.store is None:
            return
        record.roots = {root: [row for row in rows if row[0] not in restored] for root, rows in record.roots.items()}
        record.roots = {root: rows for root, rows in record.roots.items() if rows}
        try:
            await self.store.save_plan(
                self._record_key(record.plan_id), record.to_bytes(), self._record_expiry(record.when)
            )
        except EfileMcpError as exc:
            log.warning("the quarantine record of plan %s could not be updated (%s)", record.plan_id, exc)

    # ------------------------------------------------------------------ purge

    async def purge(self, *, dry_run: bool, tool: str = "purge") -> PurgeReport:
        """Delete for good the plans older than the quarantine days (their folders and manifests); audited as `expired`."""
        plans, error = await self._plans()
        expired = [plan for plan in plans if plan.expired]
        held: dict[str, str] = {}
        if self.links_inside != "remove":
            for plan in expired:
                why = await self._links_inside(plan.folder)
                if why is not None:
                    held[plan.folder] = why
        expired = [plan for plan in expired if plan.folder not in held]
        report = PurgeReport(dry_run=dry_run, expired=expired, kept=len(plans) - len(expired), error=error)
        report.held = held
        if dry_run or not expired:
            if not dry_run:
                await self.audit.write("expired", tool=tool, decision="nothing_expired", kept=report.kept)
            return report
        if self.remover is None:
            raise GuardRefusal("purge", "this quarantine cannot purge (no remover configured)")
        targets = [plan.folder for plan in expired] + [plan.folder + MANIFEST_SUFFIX for plan in expired]
        await self.audit.write(
            "expired",
            tool=tool,
            decision="intent",
            plans=[{"plan_id": p.plan_id, "folder": p.folder, "count": p.count, "size": p.size} for p in expired],
            days=self.days,
        )
        run = RemovalRun(paths=tuple(targets))
        try:
            await self.remover.remove(run)
        except AuthError as exc:
            report.error = str(exc)
        finally:
            run.settle_unfinished()
            for plan in expired:
                outcome = run.outcomes[plan.folder]
                if outcome.kind == "submitted" and outcome.task is not None:
                    status = outcome.task.status
                    report.outcomes[plan.folder] = (
                        "removed"
                        if status == "complete"
                        else "queued"
                        if status in ("waiting", "processing")
                        else f"failed: {outcome.task.error_msg or status}"
                    )
                elif outcome.kind in ("missing", "verified_absent"):
                    report.outcomes[plan.folder] = "removed"
                else:
                    report.outcomes[plan.folder] = f"failed: {outcome.message}"
            with anyio.CancelScope(shield=True):
                await self.audit.write(
                    "expired",
                    tool=tool,
                    decision="executed",
                    items=[
                        {"plan_id": p.plan_id, "folder": p.folder, "outcome": report.outcomes[p.folder]}
                        for p in expired
                    ],
                    error=report.error,
                )
        return report


def _with_earlier(record: PlanRecord, earlier: PlanRecord | None, sent: Sequence[SeenPath]) -> PlanRecord:
    """This send's record plus the rows an earlier send of the same plan kept for paths not sent now (what an
    interrupted execution moved before its replica died)."""
    if earlier is None:
        return record
    now = {seen.path for seen in sent}
    roots = {root: [row for row in rows if row[0] not in now] for root, rows in earlier.roots.items()}
    for root, rows in record.roots.items():
        roots.setdefault(root, []).extend(rows)
    return PlanRecord(record.plan_id, record.when, {root: rows for root, rows in roots.items() if rows}, record.expires)


def _refused_alone(exc: ApiError) -> MoveState:
    if exc.code == "911020":
        return MoveState("source_missing", "already absent", exc.code)
    if exc.code == "911021":
        return MoveState("target_taken", f"its place is taken ({exc})", exc.code)
    return MoveState("failed", f"not moved: {exc}", exc.code)


#: False in `efile-mcp purge`, which is the purge itself: the server's start-up purge then stays out of it.
START_UP_PURGE: contextvars.ContextVar[bool] = contextvars.ContextVar("efile_mcp_start_up_purge", default=True)


async def purge_dry_run_at_start(quarantine: Quarantine) -> PurgeReport | None:
    """The start-up dry run of the purge, its summary logged (WARNING per expired plan); None if it could not run."""
    if not START_UP_PURGE.get():
        return None
    try:
        dry = await quarantine.purge(dry_run=True)
    except EfileMcpError as exc:
        log.info("the quarantine could not be checked at start-up: %s", exc)
        return None
    if dry.expired:
        for line in dry.lines():
            log.warning("quarantine at start-up (dry run): %s", line)
    elif dry.kept:
        log.info("quarantine at start-up: %s", dry.lines()[-1])
    return dry


async def purge_at_start(
    quarantine: Quarantine, *, read_only: bool, dry: PurgeReport | None = None
) -> PurgeReport | None:
    """At server start: a dry run of the purge, its summary logged (or `dry`, the one made already); then,
    unless read-only, the purge of what expired (the same rule as `efile-mcp purge`, audited as `expired`).
    Never fatal: the server serves anyway."""
    if not START_UP_PURGE.get():
        return None
    if dry is None:
        dry = await purge_dry_run_at_start(quarantine)
    if dry is None or not dry.expired:
        return dry
    if read_only:
        log.warning("quarantine at start-up: read-only, nothing purged (run `efile-mcp purge`)")
        return dry
    try:
        done = await quarantine.purge(dry_run=False, tool="start-up")
    except EfileMcpError as exc:
        log.warning("the quarantine's expired plans could not be purged at start-up: %s", exc)
        return None
    for line in done.lines():
        log.warning("quarantine at start-up: %s", line)
    return done
