"""What a dry run saw, kept behind its token: the plan execution carries out and checks again.

A plan is stored (guard/store.py) under its id, which the sealed token names; execution loads it, lists
the paths again, and sends only those whose type, size (files) and modification time are as seen.
Stored as a small header (id, expiry, mode, selection, summary, row count, the rows' digest) and one row
per path (one compact JSON array each), written (`PlanWriter`, as a dry run finds them) and read
(`plan_rows`) in chunks of `ROWS_PER_CHUNK`: a million-path plan (EFILE_MAX_PLAN_PATHS) is never one value
in the store, nor one list in memory. Each store request of rows is a unit whose digest the header keeps
([count, digest]); the token binds the digest of those (`plan_digest`), and execution checks each unit's
rows against it as it reads them, just before it sends them (`verified_units`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client.walk import EntryKind
from ..errors import PlanRowsChanged
from .sealing import path_set_digest, plan_digest, unit_digest

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

    #: The digest the token binds, as stored in the header; "" until saved: the `plan_digest` of `units` (format
    #: 4), or the sorted path set's `path_set_digest` (formats 1 and 2, plans stored before rows were streamed).
    digest: str = ""
    #: How many rows (paths) the stored plan holds.
    count: int = 0
    #: The runs of rows as stored, in order: [count, unit_digest] each (format 4).
    units: list[list[Any]] = field(default_factory=list)
    #: The stored format (4: header + rows in units with their digests).
    version: int = 4

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
        return _dump({"v": 4, **self._head(), "n": self.count, "d": self.digest, "k": self.units})

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
            units=[[int(n), str(d)] for n, d in raw.get("k") or ()],
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
    """A plan's rows stored as they come, a unit (one store request, at most ROWS_PER_CHUNK rows) at a time,
    then its header (`finish`): a plan is known, and can be executed, only once all its rows are stored. Memory
    is one unit, whatever the number of paths; `units` (with their digests) is what the header keeps."""

    def __init__(
        self, store: StateStore, plan_id: str, expires_at: float, *, units: list[list[Any]] | None = None
    ) -> None:
        self.store = store
        self.plan_id = plan_id
        self.expires_at = expires_at
        #: Units stored so far ([count, digest]), by an earlier call of the same dry run too.
        self.units: list[list[Any]] = [list(unit) for unit in units or ()]
        self._stored = sum(int(n) for n, _ in self.units)
        self._chunk: list[bytes] = []

    @property
    def count(self) -> int:
        return self._stored + len(self._chunk)

    async def add(self, seen: SeenPath) -> None:
        self._chunk.append(_row_bytes(seen))
        if len(self._chunk) >= ROWS_PER_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._chunk:
            await self.store.save_plan_rows(self.plan_id, self._stored, self._chunk, self.expires_at)
            self.units.append([len(self._chunk), unit_digest(self._chunk)])
            self._stored += len(self._chunk)
            self._chunk = []

    async def finish(self, plan: Plan) -> None:
        """The header of `plan` (whose `paths` stay as they are: empty when streamed), after the last rows."""
        await self.flush()
        plan.units, plan.count, plan.version = self.units, self.count, 4
        plan.digest = plan_digest(self.units)
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


async def verified_units(store: StateStore, plan: Plan) -> AsyncIterator[list[SeenPath]]:
    """The plan's rows a unit at a time, each checked against the digest the header keeps for it just before it
    is handed out (what execution sends is what the token binds, whatever the store held at the start). Raises
    PlanRowsChanged for a unit that differs, LookupError for rows the store lost."""
    if plan.version < 4 or not plan.has_rows:
        async for rows in plan_rows(store, plan):
            yield rows
        return
    first = 0
    for count, digest in plan.units:
        raw = await store.load_plan_rows(plan.plan_id, first, int(count))
        if len(raw) != int(count):
            raise LookupError(f"plan {plan.plan_id} lost rows {first}-{first + int(count) - 1} in the state store")
        if unit_digest(raw) != digest:
            raise PlanRowsChanged(f"rows {first}-{first + int(count) - 1} of plan {plan.plan_id} changed in the store")
        yield [_row_of(row) for row in raw]
        first += int(count)


async def stored_digest(store: StateStore, plan: Plan) -> str | None:
    """The digest the token of `plan` must bind: from the header's units (format 4: each unit is checked when
    it is read); plans stored before bind the sorted path set, recomputed from their rows. None when unknown."""
    if plan.version >= 4:
        if sum(int(n) for n, _ in plan.units) != plan.count:
            return None
        return plan_digest(plan.units)
    if plan.version == 3:
        return None  # a format of a few hours (rows' paths only): its plans are made again
    whole = plan if not plan.has_rows else await load_plan(store, plan.plan_id)
    return None if whole is None else path_set_digest(whole.path_set)
