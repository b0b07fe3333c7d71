"""Removal into a quarantine the person can restore from, and the purge that ends it.

Layout: each path goes into the quarantine of **its own allowed root** (the innermost root holding it),
into the plan's folder, at the same place relative to the root:

    <root>/a/b/run-001            ->  <root>/.efile-quarantine/<plan id>/a/b/run-001
    <root>/.efile-quarantine/<plan id>.manifest.json                  (the manifest: when, expiry, totals, parts)
    <root>/.efile-quarantine/<plan id>.part-b000007.manifest.json     (a part: batch 7's entries)

So no data crosses a root, the path policy still holds, two paths with the same base name go to
distinct sub-folders (their parents differ), and **where an entry came from is derivable from the layout
alone**: strip `.efile-quarantine/<plan id>/`. Restoring needs neither the state store nor the manifest.
The manifest (original paths, types, sizes, when, plan id) is for the person and the audit; the state
store keeps the same record to answer storage_status without walking, and to tell an entry that was
quarantined whole from a folder made only to hold it.

Both are kept **in parts**, one per send: an execution sends a plan of up to a million paths in batches,
and each batch writes its own part (its rows in the state store, its entries in a manifest part, uploaded
after its moves), then a small header (the plan's `<plan id>.manifest.json`; in the state store, when, the
promised expiry and per part and root the paths, bytes and files). Nothing written grows with the plan, and
storage_status reads the header alone; restore and purge read the parts one at a time. A part is named by
the execution's batch number, so a batch sent again by a resumed execution replaces its part (keeping the
rows of what the interrupted one moved); a send without a batch number adds a part. Manifest parts are
files beside the plan's folder: never taken for plans, never restored, removed with their plan. A plan
quarantined by the previous version (one record value, one manifest with every entry) is still listed,
restored and purged: its rows are read as a part of their own.

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
from .requests import GuardRefusal, Progress, holds_any
from .seen import SeenPath

if TYPE_CHECKING:
    from .store import StateStore

__all__ = [
    "MANIFEST_PART",
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
#: Parts of a plan's manifest: `<plan id>.part-<part>.manifest.json`, files beside the plan's folder.
MANIFEST_PART = ".part-"
#: What a part's key in the state store holds after the plan id (a plan id never holds it).
MANIFEST_PART_KEY = "-part-"
DAY = 86400.0
#: The state store keeps a plan's record this long after it expires (purge reads it).
_RECORD_GRACE = 30 * DAY
#: Paths a whole restore remembers as staying in quarantine, at most (see _RestoreOutcome.stayed).
_STAYED_MAX = 100_000
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
    """The record of the previous version (v1, one value: when, and per root every path sent [path, kind, size,
    files]); still read for plans it quarantined (`PlanHeader.from_bytes`), never written."""

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


#: Rows of a record per root: [path, kind, size, files].
Rows = dict[str, list[list[Any]]]
#: The part a record of the previous version (v1: every row in one value) is read as.
_LEGACY_PART = "v1"


@dataclass
class PlanHeader:
    """What the state store keeps of a quarantined plan (version 2): when, the promised expiry, and per part its
    totals per root; each part's rows are a value of their own (a part per send: an execution batch "b000007", a
    send without a batch number "s000001", the rows of a v1 record "v1"). Storage status reads the header alone."""

    plan_id: str
    when: float
    expires: float | None = None
    #: Per part, per root: [paths, bytes, files].
    parts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    #: The rows of a v1 record (read from the previous version), not yet written as a part of their own.
    legacy: Rows | None = None
    #: Made while the plan's folder already held entries no record named (the header was lost, or the store was
    #: down during a batch): its totals are not the plan's, so storage_status measures the folder instead.
    partial: bool = False

    def totals(self) -> dict[str, list[int]]:
        """Per root: [paths, bytes, files] of every part."""
        found: dict[str, list[int]] = {}
        for by_root in self.parts.values():
            for root, counts in by_root.items():
                total = found.setdefault(root, [0, 0, 0])
                for i, value in enumerate(counts[:3]):
                    total[i] += value
        return found

    def to_bytes(self) -> bytes:
        # "r" is empty for the previous version, which reads rows there: it finds none and reads the layout.
        body = {"v": 2, "id": self.plan_id, "t": self.when, "x": self.expires, "r": {}, "p": self.parts}
        if self.partial:
            body["u"] = 1
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")

    @classmethod
    def from_bytes(cls, data: bytes) -> PlanHeader:
        raw = json.loads(data.decode("utf-8", "surrogatepass"))
        if raw.get("v", 1) == 1:
            record = PlanRecord.from_bytes(data)
            rows = {root: found for root, found in record.roots.items() if found}
            parts = {_LEGACY_PART: _tally(rows)} if rows else {}
            return cls(record.plan_id, record.when, record.expires, parts, legacy=rows)
        promised = raw.get("x")
        return cls(
            str(raw["id"]),
            float(raw["t"]),
            float(promised) if isinstance(promised, int | float) else None,
            {
                str(name): {str(root): [int(n) for n in counts] for root, counts in by_root.items()}
                for name, by_root in raw.get("p", {}).items()
            },
            partial=bool(raw.get("u")),
        )


@dataclass
class _Part:
    """The part one send writes: its header, its name, its rows, and the roots it held before this send."""

    header: PlanHeader
    name: str
    rows: Rows
    roots_before: set[str]


def _tally(rows: Rows) -> dict[str, list[int]]:
    return {
        root: [len(found), sum(int(row[2] or 0) for row in found), sum(int(row[3] or 0) for row in found)]
        for root, found in rows.items()
        if found
    }


def _rows_to_bytes(rows: Rows) -> bytes:
    return json.dumps({"r": rows}, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _rows_from_bytes(data: bytes) -> Rows:
    raw = json.loads(data.decode("utf-8", "surrogatepass"))
    return {str(root): [list(row) for row in found] for root, found in raw["r"].items()}


def _without(rows: Rows, paths: set[str]) -> Rows:
    """`rows` less those of `paths` (roots left empty dropped)."""
    kept = {root: [row for row in found if row[0] not in paths] for root, found in rows.items()}
    return {root: found for root, found in kept.items() if found}


def _merged(earlier: Rows, now: Rows) -> Rows:
    merged = {root: list(found) for root, found in earlier.items()}
    for root, found in now.items():
        merged.setdefault(root, []).extend(found)
    return merged


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass")


def _is_manifest_part(name: str) -> bool:
    return name.endswith(MANIFEST_SUFFIX) and MANIFEST_PART in name


def manifest_part_name(plan_id: str, part: str) -> str:
    """A part of the plan's manifest: a file beside it, never a folder, so never taken for a plan."""
    return f"{plan_id}{MANIFEST_PART}{part}{MANIFEST_SUFFIX}"


@dataclass
class _Round:
    """A restore's round: the (root, original) paths it restores, the recorded paths among them (and inside
    them) with the kind each was quarantined as, and the part of the record they come from (None: named paths, or
    a root without a record)."""

    wanted: list[tuple[str, str]]
    recorded: dict[str, str]
    part: str | None
    rows: Rows
    #: Paths the header counts in this part that the state store no longer holds (the part was lost).
    lost: int = 0


@dataclass
class _RestoreOutcome:
    """A restore's answer, kept as its rounds go: counts, the first items (listed, exceptions, audited)."""

    requested: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("restored", "conflict", "missing", "failed"), 0)
    )
    listed: list[RestoreItem] = field(default_factory=list)
    exceptions: list[RestoreItem] = field(default_factory=list)
    audited: list[dict[str, Any]] = field(default_factory=list)
    #: Paths answered for that stay in quarantine (a conflict, a failure): the closing look at the plan's folder
    #: finds them there and must not answer for them twice. Bounded (STAYED_MAX): past it, no closing look.
    stayed: set[str] = field(default_factory=set)

    def take(self, item: RestoreItem) -> None:
        if item.status in ("conflict", "failed") and len(self.stayed) <= _STAYED_MAX:
            self.stayed.add(item.path)
        self.requested += 1
        self.counts[item.status] += 1
        if len(self.listed) <= ITEMS_LISTED_MAX:
            self.listed.append(item)
        if item.status != "restored" and len(self.exceptions) < ITEMS_LISTED_MAX:
            self.exceptions.append(item)
        if len(self.audited) < 2000:
            shown = {"reason": item.reason[:300]} if item.reason and item.status != "restored" else {}
            self.audited.append({"path": item.path, "status": item.status, **shown})


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
        self, plan_id: str, paths: Sequence[SeenPath], progress: Progress | None = None, *, batch: int | None = None
    ) -> dict[str, RemoveItem]:
        """Move each path into its root's quarantine; every path gets one item: quarantined, missing, changed
        (left to the caller) or failed. Raises AuthError only before anything was moved.

        `batch`: the execution's batch number. The plan's record and manifest keep one part per batch, so a batch
        sent again (a resumed execution) replaces its own part; a send without one adds a part of its own."""
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
        # The plan's record is a small header and a part per send (per execution batch): a resumed execution (its
        # first replica died) replaces the parts of the batches it sends again, keeping the rows of what the
        # interrupted one moved, so restore_paths(plan_id) brings back everything and the plan keeps its first date.
        part = await self._open_part(plan_id, batch, paths, folder_held=bool(pre_existing))
        part.rows = _merged(
            part.rows,
            {root: [[s.path, s.kind, s.size, s.file_count] for s in group] for root, group in by_root.items()},
        )
        await self._keep_part(part.header, part.name, part.rows)
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
            # The record keeps what is in quarantine now: a path that was not moved is not the plan's to restore
            # (rows of the part an earlier send of this batch kept are for paths not sent now: they stay).
            part.rows = {
                root: [row for row in rows if row[0] not in items or items[row[0]].status == "quarantined"]
                for root, rows in part.rows.items()
            }
            part.rows = {root: rows for root, rows in part.rows.items() if rows}
            await self._keep_part(part.header, part.name, part.rows)
            await self._write_manifests(part, set(by_root))
        return items

    async def _open_part(
        self, plan_id: str, batch: int | None, paths: Sequence[SeenPath], *, folder_held: bool = False
    ) -> _Part:
        """The plan's header (made now for a new plan) and the part this send writes, with the rows it keeps of an
        earlier send of the same batch for paths not sent now. A record of the previous version (v1, every row in
        one value) becomes a part of its own first; a send without a batch number takes the paths it sends out of
        every earlier part (a part at a time)."""
        now = self.clock()
        header = await self._header(plan_id)
        if header is None:
            # `folder_held`: the plan's folder exists already, so this header will not name all it holds.
            header = PlanHeader(plan_id, now, now + self.days * DAY, partial=folder_held)
        else:
            header.expires = self._promised(header)
        sent = {seen.path for seen in paths}
        if header.legacy is not None:
            await self._rewrite_part(header, _LEGACY_PART, header.legacy, _without(header.legacy, sent))
        if batch is not None:
            name = f"b{batch:06d}"
            before = set(header.parts.get(name, {}))
            earlier = await self._part_rows(header, name) if name in header.parts else {}
            return _Part(header, name, _without(earlier, sent), before)
        for other in sorted(header.parts):
            found = await self._part_rows(header, other)
            kept = _without(found, sent)
            if kept != found:
                await self._rewrite_part(header, other, found, kept)
        number = 1 + max((int(n[1:]) for n in header.parts if n.startswith("s") and n[1:].isdigit()), default=0)
        return _Part(header, f"s{number:06d}", {}, set())

    async def _upload_part(self, plan_id: str, name: str, root: str, rows: list[list[Any]]) -> None:
        """One part of the plan's manifest in `root`: the entries of one send (one execution batch)."""
        entries = [
            {"path": path, "type": kind, "size": size, "files": files, "quarantined_as": mirror_of(root, plan_id, path)}
            for path, kind, size, files in rows
        ]
        body = {"plan_id": plan_id, "root": root, "part": name, "entries": entries}
        await self.mover.upload(quarantine_folder(root), manifest_part_name(plan_id, name), _json(body), cover="cover")

    async def _rewrite_part(self, header: PlanHeader, name: str, before: Rows, rows: Rows) -> None:
        """An earlier part that changed (paths sent again left it; a v1 record became a part): kept, and its
        manifest parts rewritten, so that neither the record nor the manifest lists a path twice."""
        await self._keep_part(header, name, rows)
        for root in sorted(set(before) | set(rows)):
            try:
                await self._upload_part(header.plan_id, name, root, rows.get(root, []))
            except EfileMcpError as exc:
                log.warning("the manifest of plan %s in %s could not be written (%s)", header.plan_id, root, exc)

    async def _write_manifests(self, part: _Part, sent_to: set[str]) -> None:
        """Per root of the part: its manifest part (this batch's entries), then the plan's manifest there (a small
        header: when, expiry, totals and the names of its parts). Each is uploaded whole, never the plan's rows."""
        header, plan_id = part.header, part.header.plan_id
        expires = self._promised(header)
        totals = header.totals()
        for root in sorted(sent_to | set(part.rows) | part.roots_before):
            rows = part.rows.get(root, [])
            folder = quarantine_folder(root)
            try:
                if rows or root in part.roots_before:  # an emptied part is rewritten empty, never left stale
                    await self._upload_part(plan_id, part.name, root, rows)
                listed = sorted(name for name, by_root in header.parts.items() if root in by_root)
                if not listed:
                    continue
                count, size, files = totals.get(root, [0, 0, 0])
                manifest = {
                    "plan_id": plan_id,
                    "root": root,
                    "quarantined_at": iso_time(header.when),
                    "expires_at": iso_time(expires),
                    "how_to_restore": "move each entry back to `path` (restore_paths does it), or strip "
                    f"'{QUARANTINE_DIR}/{plan_id}/' from its place",
                    "count": count,
                    "size": size,
                    "files": files,
                    "parts": [manifest_part_name(plan_id, name) for name in listed],
                }
                await self.mover.upload(folder, plan_id + MANIFEST_SUFFIX, _json(manifest), cover="cover")
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
                if exc.code == "911020" and await self._in_quarantine(join(target, batch[0].rpartition("/")[2])):
                    # Alone and "absent": a move that landed meanwhile (a dead replica's, held up) put it here.
                    return {batch[0]: MoveState("moved", f"found in quarantine already ({exc})")}
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

    async def _in_quarantine(self, mirror: str) -> bool:
        """Whether a listing shows `mirror` (a path's place in this plan's quarantine) taken."""
        try:
            return await self._listings().entry(mirror) is not None
        except AuthError:
            raise
        except EfileMcpError:
            return False

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

    def _part_key(self, plan_id: str, name: str) -> str:
        return f"quarantine-{plan_id}{MANIFEST_PART_KEY}{name}"

    def _promised(self, header: PlanHeader) -> float:
        """When the plan expires: its days from when it was quarantined, never sooner than it was promised."""
        return max(header.when + self.days * DAY, header.expires or 0.0)

    def _record_expiry(self, header: PlanHeader) -> float:
        return self._promised(header) + _RECORD_GRACE

    async def _header(self, plan_id: str) -> PlanHeader | None:
        """The plan's header in the state store (a v1 record is read with its rows); None without one, or when what
        is stored cannot be read as this plan's header. A plan folder is named by anyone who can write to the
        storage: one named like a part's key (`<id>-part-b000001`) must not read that part as a header."""
        if self.store is None or MANIFEST_PART_KEY in plan_id:
            return None
        try:
            data = await self.store.load_plan(self._record_key(plan_id))
        except EfileMcpError:
            return None
        if not data:
            return None
        try:
            header = PlanHeader.from_bytes(data)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            log.warning("the quarantine record of plan %s cannot be read (%s): its folder is measured", plan_id, exc)
            return None
        return header if header.plan_id == plan_id else None

    async def _part_rows(self, header: PlanHeader, name: str) -> Rows:
        """One part's rows per root (a v1 record's rows are its part "v1"); {} when the store lost it."""
        if name == _LEGACY_PART and header.legacy is not None:
            return header.legacy
        if self.store is None:
            return {}
        try:
            data = await self.store.load_plan(self._part_key(header.plan_id, name))
        except EfileMcpError as exc:
            log.warning("part %s of the quarantine record of plan %s could not be read (%s)", name, header.plan_id, exc)
            return {}
        try:
            return _rows_from_bytes(data) if data else {}
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            log.warning("part %s of the quarantine record of plan %s cannot be read (%s)", name, header.plan_id, exc)
            return {}

    async def _keep_part(self, header: PlanHeader, name: str, rows: Rows) -> None:
        """Write one part (an emptied part is dropped), then the header with its totals: the header names a part
        only once the part is there, and is the only value rewritten by every send (a few hundred bytes)."""
        if name == _LEGACY_PART:
            header.legacy = None  # from now on a part like the others: the header is written as version 2
        if self.store is not None:
            # The other parts as the store holds them now, not as this copy read them: a restore and an execution
            # (or two replicas' batches) each write the header, and a copy read before the other's would drop its part.
            stored = await self._header(header.plan_id)
            if stored is not None and stored.legacy is None:
                header.parts = {other: counts for other, counts in stored.parts.items() if other != name}
                header.partial = header.partial or stored.partial
        if rows:
            header.parts[name] = _tally(rows)
        else:
            header.parts.pop(name, None)
        if self.store is None:
            return
        expiry = self._record_expiry(header)
        try:
            if rows:
                await self.store.save_plan(self._part_key(header.plan_id, name), _rows_to_bytes(rows), expiry)
            else:
                await self.store.drop_plans([self._part_key(header.plan_id, name)])
            await self.store.save_plan(self._record_key(header.plan_id), header.to_bytes(), expiry)
        except EfileMcpError as exc:  # the layout alone still says where everything came from
            log.warning("the quarantine record of plan %s could not be kept (%s)", header.plan_id, exc)

    async def _lost_part(self, header: PlanHeader, name: str) -> None:
        """A part the header names and the store no longer holds (evicted): the header stops counting it and is
        partial from now on (storage_status measures the plan's folder; a whole restore's closing look finds its
        paths)."""
        if name == _LEGACY_PART or self.store is None or name not in header.parts:
            return
        header.partial = True
        await self._keep_part(header, name, {})

    async def _drop_record(self, plan_id: str) -> None:
        """Forget the plan's record: every part, then the header (a purged plan, or one restored whole)."""
        if self.store is None:
            return
        try:
            header = await self._header(plan_id)
            if header is None:
                return
            parts = [self._part_key(plan_id, name) for name in header.parts if header.legacy is None]
            await self.store.drop_plans([*parts, self._record_key(plan_id)])
        except EfileMcpError as exc:
            log.warning("the quarantine record of plan %s could not be dropped (%s)", plan_id, exc)

    async def list_plans(self) -> list[QuarantinedPlan]:
        """Every plan in the quarantine of every allowed root, newest first."""
        plans, _ = await self._plans()
        return plans

    async def _plans(self, parts: dict[str, list[str]] | None = None) -> tuple[list[QuarantinedPlan], str | None]:
        """Every plan folder of every root's quarantine (files beside them, manifests and their parts, are never
        plans); `parts` is filled with the manifest parts beside each plan folder, by folder."""
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
                    if manifest is not None and manifest.kind != "file":
                        manifest = None  # a folder (or link) named like a manifest is not the plan's to purge
                    elif manifest is not None and parts is not None:
                        parts.setdefault(plan_folder(root, name), []).append(join(folder, name + MANIFEST_SUFFIX))
                    plans.append(await self._describe(root, name, entry, manifest, budget))
                elif parts is not None and entry.kind == "file" and _is_manifest_part(name):
                    owner = name.rpartition(MANIFEST_PART)[0]
                    parts.setdefault(plan_folder(root, owner), []).append(join(folder, name))

        async with task_group() as tg:
            for root in self.policy.allowed_roots:
                tg.start_soon(in_root, root)
        plans.sort(key=lambda plan: (plan.quarantined_at or "", plan.plan_id), reverse=True)
        return plans, "; ".join(errors) or None

    async def _describe(
        self, root: str, plan_id: str, entry: Entry, manifest: Entry | None, budget: list[int]
    ) -> QuarantinedPlan:
        record = await self._header(plan_id)  # the header alone: its totals, never the plan's rows
        when = record.when if record else (manifest.mtime if manifest and manifest.mtime else entry.mtime)
        exact = True
        totals = record.totals() if record is not None and not record.partial else {}
        if root in totals:
            count, size = totals[root][0], totals[root][1]
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
        record = await self._header(plan_id)
        totals = record.totals() if record is not None else {}
        items: dict[str, RestoreItem] = {}  # named paths no root of the plan holds
        rounds: list[_Round] = []  # the rounds known before the first moves: the first part's, the unrecorded roots'
        count = 0
        if paths is None:
            # The whole plan, a part at a time: what a part restored leaves its part before the next is read.
            for root in roots:
                if root in totals:
                    count += totals[root][0]
                else:  # no record of this root: its plan folder's top entries (the layout says where they came from)
                    top = await listings.read_dir(plan_folder(root, plan_id))
                    rounds.append(_Round([(root, join(root, name)) for name in top.entries], {}, None, {}))
                    count += len(top.entries)
            later = sorted(record.parts) if record is not None else []
        else:
            unfit = [p for p in paths if self._malformed(p)]
            if unfit:
                raise GuardRefusal(
                    "restore_paths",
                    f"{self._malformed(unfit[0])} Nothing was restored: name each path as the removal showed it.",
                )
            wanted: list[tuple[str, str]] = []  # (root, original)
            for path in dict.fromkeys(paths):
                holder = innermost_root(self.policy, path)
                if holder is None or holder not in roots:
                    items[path] = RestoreItem(
                        path=path, status="missing", reason="not in this plan's quarantine (no such root holds it)."
                    )
                else:
                    wanted.append((holder, path))
            recorded = await self._recorded_within(record, {original for _, original in wanted})
            rounds.append(_Round(wanted, recorded, None, {}))
            count = len(wanted)
            later = []
        if later and record is not None:
            rounds.insert(0, await self._part_round(record, later.pop(0), roots))
        first = [original for round_ in rounds for _, original in round_.wanted[:200]][:200]
        await self.audit.write(
            "restore",
            tool="restore_paths",
            decision="intent",
            plan_id=plan_id,
            paths=first,
            paths_count=count,
        )
        outcome = _RestoreOutcome()
        for item in items.values():
            outcome.take(item)
        lost = 0  # paths of parts the state store lost: they stay in quarantine, and the answer says so
        while rounds or later:
            if rounds:
                round_ = rounds.pop(0)
            else:
                assert record is not None  # parts are read from it
                round_ = await self._part_round(record, later.pop(0), roots)
            lost += round_.lost
            results = await self._restore_entries(plan_id, round_.wanted, round_.recorded, listings)
            restored = {path for path, item in results.items() if item.status == "restored"}
            for item in results.values():
                outcome.take(item)
            del results
            if record is not None and restored:
                await self._forget(record, restored, round_)
        unrecorded = 0
        if paths is None and record is not None and len(outcome.stayed) <= _STAYED_MAX:
            # A closing look at what is still in the plan's folder: entries its record does not name (the store
            # lost a header, or was down during a batch, or an older replica wrote its own record) come back too,
            # from the layout alone, as a plan without a record would. Empty holder folders cost a listing each.
            fresh = self._listings()
            for root in roots:
                try:
                    top = await fresh.read_dir(plan_folder(root, plan_id))
                except EfileMcpError:
                    continue
                leftovers = [(root, join(root, name)) for name in top.entries]
                results = await self._restore_entries(plan_id, leftovers, {}, fresh, skip=outcome.stayed)
                for item in results.values():
                    outcome.take(item)
                    unrecorded += item.status == "restored"
            if unrecorded:
                log.warning("plan %s: %d path(s) its record did not name were restored", plan_id, unrecorded)
            lost = 0  # the paths of lost parts were in the plan's folder: the closing look answered for them
        emptied = [root for root in roots if await self._drop_if_empty(root, plan_id)]
        if record is not None and len(emptied) == len(roots) and not record.parts:
            await self._drop_record(plan_id)  # restored whole: nothing of it is left in the state store
        await self.audit.write(
            "restore",
            tool="restore_paths",
            decision="executed",
            plan_id=plan_id,
            emptied=[plan_folder(root, plan_id) for root in emptied],
            items=outcome.audited,
            **({"not_in_record": lost} if lost else {}),
            **({"restored_unrecorded": unrecorded} if unrecorded else {}),
        )
        summary = RestoreSummary(requested=outcome.requested, **outcome.counts)
        listed = outcome.listed if outcome.requested <= ITEMS_LISTED_MAX else None
        exceptions = None if listed is not None else outcome.exceptions
        steps = []
        if summary.restored:
            steps.append(f"{summary.restored} path(s) are back where they were")
        if unrecorded:
            steps.append(
                f"{unrecorded} of them were in the plan's folder without being in its record (the state store lost "
                "part of it): they came back from the layout alone"
            )
        if summary.conflict:
            steps.append(
                f"{summary.conflict} path(s) exist again and were left in quarantine: move or remove what is there now, "
                "then call restore_paths again for them"
            )
        if summary.failed:
            steps.append(f"{summary.failed} path(s) failed (see reason): they are still in quarantine")
        if summary.missing:
            steps.append(f"{summary.missing} path(s) are not in this plan's quarantine")
        if lost:
            steps.append(
                f"{lost} more path(s) of this plan are still in quarantine: the state store lost the part of its "
                f"record that named them. The parts of {plan_id + MANIFEST_SUFFIX} beside the plan's folder list "
                "them: call restore_paths with those paths"
            )
        return RestorePathsResult(
            plan_id=plan_id,
            summary=summary,
            items=listed,
            exceptions=exceptions,
            next_step=("; ".join(steps) or "Nothing to restore.") + ".",
        )

    async def _part_round(self, record: PlanHeader, name: str, roots: list[str]) -> _Round:
        """One part of the record, as a round of a whole plan's restore (its rows in the roots holding the plan)."""
        rows = await self._part_rows(record, name)
        wanted = [(root, row[0]) for root in roots for row in rows.get(root, ())]
        counted = record.parts.get(name, {})
        lost = 0 if rows else sum(counted[root][0] for root in roots if root in counted)
        if lost:
            await self._lost_part(record, name)
        return _Round(wanted, {row[0]: row[1] for found in rows.values() for row in found}, name, rows, lost)

    async def _recorded_within(self, record: PlanHeader | None, named: set[str]) -> dict[str, str]:
        """The recorded paths that are, or lie inside, one of the paths `named` (read a part at a time): what a
        restore of chosen paths needs to tell an entry quarantined whole from a folder made to hold entries."""
        found: dict[str, str] = {}
        if record is None or not named:
            return found
        for name in sorted(record.parts):
            part = await self._part_rows(record, name)
            if not part:
                await self._lost_part(record, name)
            for rows in part.values():
                for row in rows:
                    path = str(row[0])
                    while path:
                        if path in named:
                            found[str(row[0])] = str(row[1])
                            break
                        path = path.rpartition("/")[0]
        return found

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
        self,
        plan_id: str,
        wanted: list[tuple[str, str]],
        recorded: dict[str, str],
        listings: Listings,
        skip: set[str] | None = None,
    ) -> dict[str, RestoreItem]:
        """`recorded`: the kind each recorded path was quarantined as; `skip`: paths an earlier round of this
        restore answered for already (they get no second item)."""
        items: dict[str, RestoreItem] = {}
        skipped = sorted(skip) if skip else []
        to_move: dict[str, str] = {}  # mirror -> original parent
        originals: dict[str, str] = {}  # mirror -> original
        pending = list(wanted)
        while pending:
            batch, pending = pending[:500], pending[500:]
            mirrors = {original: mirror_of(root, plan_id, original) for root, original in batch}
            found = await listings.entries([*mirrors, *mirrors.values()])
            for root, original in batch:
                if skip is not None and original in skip:
                    continue
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
                elif in_quarantine.kind == "symlink" and recorded.get(original) != "symlink":
                    # remove_paths never quarantines a link by itself (links move only inside their folder):
                    # one lying here on its own was put here (or swapped for what was quarantined), and goes
                    # nowhere by a restore nobody confirms.
                    items[original] = RestoreItem(
                        path=original,
                        status="failed",
                        reason="it is a symbolic link this plan did not quarantine by itself; it stays in quarantine",
                        quarantined_as=mirror,
                    )
                elif there_now is None and holds_any(skipped, original):
                    # A folder holding a path that stays in quarantine (refused, in conflict): never moved back whole,
                    # which would carry that path back with it.
                    continue
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

    async def _manifest_parts(self, root: str, plan_id: str, listings: Listings) -> list[str]:
        """The plan's manifest and its parts beside its folder in `root` (files named after the plan; a folder or
        a link named so is not the plan's)."""
        prefix = plan_id + MANIFEST_PART
        try:
            # Read whole, not by the API's keyword search (whose matching the API does not document).
            listing = await listings.read_dir(quarantine_folder(root))
        except EfileMcpError as exc:
            log.info("the manifest parts of plan %s in %s could not be listed (%s)", plan_id, root, exc)
            return []
        return [
            join(quarantine_folder(root), name)
            for name, entry in listing.entries.items()
            if entry.kind == "file"
            and (name == plan_id + MANIFEST_SUFFIX or (name.startswith(prefix) and _is_manifest_part(name)))
        ]

    async def _drop_if_empty(self, root: str, plan_id: str) -> bool:
        """Once everything is restored, the plan's folder holds only the folders made to hold entries: it, its
        manifest and the manifest's parts are removed, so storage_status no longer lists it. Anything else left in
        it keeps it all."""
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
        parts = await self._manifest_parts(root, plan_id, listings)
        run = RemovalRun(paths=(folder, *parts))
        try:
            await self.remover.remove(run)
        except EfileMcpError as exc:
            log.info("the emptied quarantine folder %s was not removed (%s)", folder, exc)
            return False
        run.settle_unfinished()
        return run.outcomes[folder].kind in ("submitted", "missing", "verified_absent")

    async def _forget(self, record: PlanHeader, restored: set[str], round_: _Round) -> None:
        """Restored paths leave the record: the round's own part, or (named paths) every part that holds some,
        a part at a time."""
        gone = restored & round_.recorded.keys()
        if not gone:
            return
        parts = [round_.part] if round_.part is not None else sorted(record.parts)
        for name in parts:
            found = round_.rows if round_.part is not None else await self._part_rows(record, name)
            kept = _without(found, gone)
            if kept == found:
                continue
            if name == _LEGACY_PART and record.legacy is not None:
                # A v1 record becomes a part: its manifest part is written (the old manifest stays as it was).
                await self._rewrite_part(record, name, found, kept)
            else:
                await self._keep_part(record, name, kept)

    # ------------------------------------------------------------------ purge

    async def purge(self, *, dry_run: bool, tool: str = "purge") -> PurgeReport:
        """Delete for good the plans older than the quarantine days (their folders, manifests and manifest parts, and
        their records in the state store); audited as `expired`."""
        parts: dict[str, list[str]] = {}
        plans, error = await self._plans(parts)
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
        # Each plan's folder, its manifest and the manifest's parts (those that are files: `_plans`).
        targets = [plan.folder for plan in expired]
        targets += [path for plan in expired for path in parts.get(plan.folder, ())]
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
                # A plan whose every folder is deleted (or being deleted) leaves nothing in the state store.
                gone = {p.plan_id for p in expired if report.outcomes[p.folder] in ("removed", "queued")}
                gone -= {p.plan_id for p in plans if report.outcomes.get(p.folder) not in ("removed", "queued")}
                for plan_id in sorted(gone):
                    await self._drop_record(plan_id)
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
