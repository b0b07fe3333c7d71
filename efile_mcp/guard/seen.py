"""What a dry run saw, kept behind its token: the plan execution carries out and checks again.

A plan is stored (guard/store.py) under its id, which the sealed token names; execution loads it, lists
the paths again, and sends only those whose type, size (files) and modification time are as seen.
Serialised compactly (one JSON array per path): a 10,000-path plan is about 1 MB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..client.walk import EntryKind


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

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "id": self.plan_id,
                "e": self.expires_at,
                "s": self.select,
                "c": self.covered,
                "t": self.created_at,
                "m": self.mode,
                "x": self.exceptions,
                "u": self.summary,
                "q": self.quota,
                "p": [seen.to_row() for seen in self.paths],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8", "surrogatepass")

    @classmethod
    def from_bytes(cls, data: bytes) -> Plan:
        raw = json.loads(data.decode("utf-8", "surrogatepass"))
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
            paths=[SeenPath.from_row(row) for row in raw["p"]],
        )

    @property
    def path_set(self) -> list[str]:
        return [seen.path for seen in self.paths]
