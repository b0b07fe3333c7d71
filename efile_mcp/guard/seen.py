"""What a dry run saw, kept behind its token: the plan execution carries out and checks again.

A plan is stored (guard/store.py) under its id, which the sealed token names; execution loads it, lists
the paths again, and sends only those whose type, size (files) and modification time are as seen.
Stored as a small header (id, expiry, mode, selection, summary, row count, the rows' digest) and one row
per path (one compact JSON array each), written (`PlanWriter`, as a dry run finds them) and read
(`plan_rows`) in chunks of `ROWS_PER_CHUNK`: a million-path plan (EFILE_MAX_PLAN_PATHS) is never one value
in the store, nor one list in memory. The token binds the rows' digest (`RowsDigest`: the paths in stored
order), which execution recomputes from the rows, a chunk at a time, before anything is sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client.walk import EntryKind
from .sealing import RowsDigest, path_set_digest

if TYPE_CHECKING:
    from .store import StateStore

#: Rows written or read per store request: a few thousand, so memory is bounded by a chunk, not the plan.
ROWS_PER_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class SeenPath:
    """One removable path as the dry run found it."""

    path: str
    kind: EntryKind
    #: A file's size; a folder's whole tree (regular files).
    size: int
    #: Its own modification time (epoch seconds), as listed; compared again at execution.
    mtime: float | None
    #: A file's own size as listed (the folder's inode size for a folder), compared again at execution.
    listed_size: int
    file_count: int = 0
    newest: float | None = None
    #: False when the folder was too big (or slow) to read whole: size and counts are lower bounds.
    complete: bool = True
    #: A folder's tree fingerprint (hex): every entry's path below it, type, size and mtime, hashed while walking.
    #: None for files and for plans stored before fingerprints (their folders are compared without it).
    fingerprint: str | None = None

    def to_row(self) -> list[Any]:
        return [
            self.path,
            self.kind,
            self.size,
            self.mtime,
            self.listed_size,
            self.file_count,
            self.newest,
            int(self.complete),
            *([self.fingerprint] if self.fingerprint is not None else []),
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> SeenPath:
        path, kind, size, mtime, listed, files, newest, complete, *more = row  # 8 fields before fingerprints
        fingerprint = str(more[0]) if more and more[0] is not None else None
        return cls(str(path), kind, int(size), mtime, int(listed), int(files), newest, bool(complete), fingerprint)


@dataclass
class Plan:
    plan_id: str
    expires_at: float
    #: The paths that will be sent, each with what was seen of it (no covered paths: they go with their folder).
    paths: list[SeenPath]
    #: The selection that produced it (None when paths were named); execution by select must match it.
    select: dict[str, Any] | None = None
    #: Paths named (or matched) inside another path of the plan: removed with it, not sent.
    covered: list[str] = field(default_factory=list)
    #: When the dry run saw it (epoch seconds): the person's form speaks of ages as of then, the same every round.
    created_at: float = 0.0
    #: "quarantine" (move into the root's .efile-quarantine, restorable) or "delete" (permanent); bound by the plan.
    mode: str = "delete"
    #: What the dry run did not plan, for the person's review: [path, status, reason] rows (refused, missing).
    exceptions: list[list[str]] = field(default_factory=list)
    #: The dry run's summary (RemoveSummary.model_dump()), for the person's review page: totals equal the answer's.
    summary: dict[str, Any] = field(default_factory=dict)
    #: Quota before and after, when known: {"path", "limit_bytes", "used_bytes", "after_bytes"} per quota entry.
    quota: list[dict[str, Any]] = field(default_factory=list)

    #: The digest the token binds, as stored in the header; "" until saved: a `RowsDigest` of the rows (format
    #: 3), or the sorted path set's `path_set_digest` (formats 1 and 2, plans stored before rows were streamed).
    digest: str = ""
    #: How many rows (paths) the stored plan holds.
    count: int = 0
    #: The stored format (3: header + rows with a rows digest).
    version: int = 3

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.plan_id,
            "e": self.expires_at,
            "s": self.select,
            "c": self.covered,
            "t": self.created_at,
            "m": self.mode,
            "x": self.exceptions,
            "u": self.summary,
            "q": self.quota,
        }

    def header_bytes(self) -> bytes:
        """The stored header: everything but the paths, which are rows beside it (`PlanWriter` sets count and
        digest)."""
        return _dump({"v": 3, **self._head(), "n": self.count, "d": self.digest})

    def to_bytes(self) -> bytes:
        """The whole plan as one value (the format before rows; still read)."""
        return _dump({"v": 1, **self._head(), "p": [seen.to_row() for seen in self.paths]})

    @classmethod
    def from_bytes(cls, data: bytes) -> Plan:
        """A whole plan (format 1), or a header (format 2) whose `paths` are still to be read (`load_plan`)."""
        raw = json.loads(data.decode("utf-8", "surrogatepass"))
        rows = raw.get("p")
        return cls(
            plan_id=raw["id"],
            expires_at=float(raw["e"]),
            select=raw.get("s"),
            covered=list(raw.get("c") or ()),
            created_at=float(raw.get("t") or 0.0),
            mode=str(raw.get("m") or "delete"),
            exceptions=[list(row) for row in raw.get("x") or ()],
            summary=dict(raw.get("u") or {}),
            quota=[dict(q) for q in raw.get("q") or ()],
            paths=[SeenPath.from_row(row) for row in rows or ()],
            digest=str(raw.get("d") or ""),
            count=int(raw["n"]) if "n" in raw else len(rows or ()),
            version=int(raw.get("v") or 1),
        )

    @property
    def has_rows(self) -> bool:
        """A header stored apart from its rows (formats 2 and 3), not loaded."""
        return self.count > 0 and not self.paths

    @property
    def path_set(self) -> list[str]:
        return [seen.path for seen in self.paths]


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _row_bytes(seen: SeenPath) -> bytes:
    return _dump(seen.to_row())


def _row_of(data: bytes) -> SeenPath:
    return SeenPath.from_row(json.loads(data.decode("utf-8", "surrogatepass")))


class PlanWriter:
    """A plan's rows stored as they come, a chunk at a time, then its header (`finish`): a plan is known, and
    can be executed, only once all its rows are stored. Memory is one chunk, whatever the number of paths."""

    def __init__(self, store: StateStore, plan_id: str, expires_at: float, *, stored: int = 0) -> None:
        self.store = store
        self.plan_id = plan_id
        self.expires_at = expires_at
        #: The digest of the rows added through this writer (a plan written across calls is digested at the end,
        #: from its stored rows: `finish(digest=...)`).
        self.digest = RowsDigest()
        self._chunk: list[bytes] = []
        #: Rows already in the store (`stored`: by an earlier call of the same dry run).
        self._stored = stored

    @property
    def count(self) -> int:
        return self._stored + len(self._chunk)

    async def add(self, seen: SeenPath) -> None:
        self.digest.add(seen.path)
        self._chunk.append(_row_bytes(seen))
        if len(self._chunk) >= ROWS_PER_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._chunk:
            await self.store.save_plan_rows(self.plan_id, self._stored, self._chunk, self.expires_at)
            self._stored += len(self._chunk)
            self._chunk = []

    async def finish(self, plan: Plan, *, digest: str | None = None) -> None:
        """The header of `plan` (whose `paths` stay as they are: empty when streamed), after the last rows."""
        await self.flush()
        plan.digest, plan.count, plan.version = digest or self.digest.hexdigest(), self.count, 3
        await self.store.save_plan(plan.plan_id, plan.header_bytes(), plan.expires_at)


async def save_plan(store: StateStore, plan: Plan) -> None:
    """A plan built whole in memory (`plan.paths`): its rows, a chunk at a time, then its header."""
    writer = PlanWriter(store, plan.plan_id, plan.expires_at)
    for seen in plan.paths:
        await writer.add(seen)
    await writer.finish(plan)


async def load_header(store: StateStore, plan_id: str) -> Plan | None:
    """The plan's header alone (paths empty unless stored whole in the old format); None when unknown."""
    data = await store.load_plan(plan_id)
    return None if data is None else Plan.from_bytes(data)


async def plan_rows(
    store: StateStore, plan: Plan, first: int = 0, count: int | None = None, *, chunk: int = ROWS_PER_CHUNK
) -> AsyncIterator[list[SeenPath]]:
    """The plan's paths from `first` (up to `count` of them), in chunks of at most `chunk`, in plan order.
    Raises LookupError when the store holds fewer rows than the header says (expired or lost meanwhile)."""
    end = plan.count if count is None else min(plan.count, first + count)
    if not plan.has_rows:
        for start in range(first, end, chunk):
            yield plan.paths[start : min(end, start + chunk)]
        return
    for start in range(first, end, chunk):
        wanted = min(chunk, end - start)
        rows = await store.load_plan_rows(plan.plan_id, start, wanted)
        if len(rows) != wanted:
            raise LookupError(f"plan {plan.plan_id} lost rows {start}-{start + wanted - 1} in the state store")
        yield [_row_of(row) for row in rows]


async def load_plan(store: StateStore, plan_id: str) -> Plan | None:
    """The whole plan, header and rows; None when unknown, expired, or its rows are not all there."""
    plan = await load_header(store, plan_id)
    if plan is None or not plan.has_rows:
        return plan
    paths: list[SeenPath] = []
    try:
        async for rows in plan_rows(store, plan):
            paths.extend(rows)
    except LookupError:
        return None
    plan.paths = paths
    return plan


async def stored_digest(store: StateStore, plan: Plan) -> str | None:
    """The digest of what the store holds for `plan`, recomputed from its rows a chunk at a time (what the
    token must bind); None when rows are missing. Plans stored before format 3 bind the sorted path set."""
    if plan.version < 3:
        whole = plan if not plan.has_rows else await load_plan(store, plan.plan_id)
        return None if whole is None else path_set_digest(whole.path_set)
    digest = RowsDigest()
    try:
        async for rows in plan_rows(store, plan):
            for seen in rows:
                digest.add(seen.path)
    except LookupError:
        return None
    return digest.hexdigest()
