"""A plan as the person reads it: a folder tree with whole-tree totals, a flat list to page and search,
the types, the exceptions and a CSV of all of it.

Pure functions of a `Plan` (no I/O, no policy): the review page's routes ask for pages of it as JSON, so
a 100,000-path plan is read a screenful at a time and never sent as one document.
"""

from __future__ import annotations

import csv
import heapq
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..guard.report import human_age, shown_name
from ..guard.seen import Plan, SeenPath
from ..models.times import iso_time
from ..models.units import human_size

#: Most rows one JSON page carries.
PAGE_MAX = 500
PAGE_DEFAULT = 100
#: Types (extensions) listed on the page; the rest are summed as "other".
TYPES_SHOWN = 12
#: CSV rows written per chunk of the streamed download.
CSV_CHUNK_ROWS = 500
CSV_COLUMNS = (
    "status", "path", "type", "bytes", "size", "files", "newest_change", "modified", "complete", "reason",
)  # fmt: skip


def _newest(seen: SeenPath) -> float | None:
    return seen.newest if seen.kind == "directory" else seen.mtime


@dataclass(slots=True, eq=False)
class Node:
    """A folder of the tree (a plan path, or a folder that holds plan paths), or a plan file."""

    path: str
    seen: SeenPath | None = None
    size: int = 0
    files: int = 0
    #: Plan paths in this tree (1 for a plan path itself).
    items: int = 0
    newest: float | None = None
    complete: bool = True
    children: dict[str, Node] = field(default_factory=dict)
    _by_size: list[Node] | None = None
    _by_name: list[Node] | None = None

    def add(self, seen: SeenPath) -> None:
        self.size += seen.size
        self.files += seen.file_count if seen.kind == "directory" else (1 if seen.kind == "file" else 0)
        self.items += 1
        newest = _newest(seen)
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest
        self.complete = self.complete and seen.complete

    def ordered(self, sort: str) -> list[Node]:
        if sort == "name":
            if self._by_name is None:
                self._by_name = sorted(self.children.values(), key=lambda n: n.path)
            return self._by_name
        if self._by_size is None:
            self._by_size = sorted(self.children.values(), key=lambda n: (-n.size, n.path))
        return self._by_size


def _visible(text: str) -> str:
    return shown_name(text)


def page_bounds(offset: Any, limit: Any) -> tuple[int, int]:
    """offset and limit from a query string, clamped: a bad value is the default, never an error."""
    try:
        start = max(0, int(offset))
    except (TypeError, ValueError):
        start = 0
    try:
        count = min(PAGE_MAX, max(1, int(limit)))
    except (TypeError, ValueError):
        count = PAGE_DEFAULT
    return start, count


class PlanView:
    """Everything the page shows of one plan, computed once (about 1 s for 100,000 paths)."""

    def __init__(self, plan: Plan, now: float) -> None:
        self.plan = plan
        self.now = now
        self.root = Node("/")
        for seen in plan.paths:
            self._insert(seen)
        top = self.root
        while len(top.children) == 1 and top.seen is None:
            (only,) = top.children.values()
            if only.seen is not None:
                break
            top = only
        self.top = top
        self.top_shown = _visible(top.path)
        self._by_path = sorted(plan.paths, key=lambda s: s.path)
        self._nodes: dict[str, Node] = {}
        self._types: list[dict[str, Any]] | None = None
        self._largest: list[SeenPath] | None = None
        self._index(self.root)

    def _insert(self, seen: SeenPath) -> None:
        node = self.root
        node.add(seen)
        walked = ""
        for part in seen.path.strip("/").split("/"):
            walked += "/" + part
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = Node(walked)
            child.add(seen)
            node = child
        node.seen = seen

    def _index(self, root: Node) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            self._nodes[node.path] = node
            stack.extend(node.children.values())

    # ------------------------------------------------------------------ what a row says

    def _age(self, epoch: float | None) -> str | None:
        return human_age(epoch, self.now)

    def node_row(self, node: Node) -> dict[str, Any]:
        seen = node.seen
        kind = seen.kind if seen is not None else "group"
        return {
            "path": node.path,
            "shown": _visible(node.path),
            "name": _visible(node.path.rsplit("/", 1)[-1] or "/"),
            "kind": kind,
            "in_plan": seen is not None,
            "size": node.size,
            "size_text": human_size(node.size),
            "files": node.files,
            "items": node.items,
            "newest": iso_time(node.newest),
            "age": self._age(node.newest),
            "complete": node.complete,
            "expandable": bool(node.children),
        }

    def path_row(self, seen: SeenPath) -> dict[str, Any]:
        newest = _newest(seen)
        return {
            "path": seen.path,
            "shown": _visible(seen.path),
            "kind": seen.kind,
            "size": seen.size,
            "size_text": human_size(seen.size),
            "files": seen.file_count if seen.kind == "directory" else 1 if seen.kind == "file" else 0,
            "newest": iso_time(newest),
            "age": self._age(newest),
            "complete": seen.complete,
        }

    # ------------------------------------------------------------------ pages

    def children(self, folder: str | None, offset: int, limit: int, sort: str = "size") -> dict[str, Any] | None:
        """One page of a folder's children (the top of the tree when `folder` is None); None: no such folder."""
        node = self.top if not folder else self._nodes.get(folder)
        if node is None:
            return None
        ordered = node.ordered(sort)
        return {
            "folder": self.node_row(node),
            "total": len(ordered),
            "offset": offset,
            "items": [self.node_row(child) for child in ordered[offset : offset + limit]],
        }

    def paths(self, query: str, offset: int, limit: int) -> dict[str, Any]:
        """One page of every plan path in path order, those containing `query` (any case) when it is given."""
        needle = query.casefold().strip()
        matching = [s for s in self._by_path if needle in s.path.casefold()] if needle else self._by_path
        return {
            "query": query,
            "total": len(matching),
            "offset": offset,
            "items": [self.path_row(s) for s in matching[offset : offset + limit]],
        }

    def exceptions(self, offset: int, limit: int) -> dict[str, Any]:
        rows = self.plan.exceptions
        return {
            "total": len(rows),
            "offset": offset,
            "items": [self._exception_row(row) for row in rows[offset : offset + limit]],
        }

    @staticmethod
    def _exception_row(row: list[str]) -> dict[str, Any]:
        path = str(row[0]) if row else ""
        return {
            "path": path,
            "shown": _visible(path),
            "status": str(row[1]) if len(row) > 1 else "",
            "reason": str(row[2]) if len(row) > 2 and row[2] is not None else "",
        }

    # ------------------------------------------------------------------ the whole

    def totals(self) -> dict[str, Any]:
        """The dry run's summary as the plan kept it; the plan's own paths when it kept none."""
        summary = dict(self.plan.summary)
        root = self.root
        summary.setdefault("would_remove", len(self.plan.paths))
        summary.setdefault("total_size", root.size)
        summary.setdefault("file_count", root.files)
        summary.setdefault("folder_count", sum(1 for s in self.plan.paths if s.kind == "directory"))
        summary.setdefault("newest_modified", iso_time(root.newest))
        if not root.complete:
            summary.setdefault("lower_bound", True)
        summary.setdefault("refused", sum(1 for row in self.plan.exceptions if len(row) > 1 and row[1] == "refused"))
        summary.setdefault("missing", sum(1 for row in self.plan.exceptions if len(row) > 1 and row[1] == "missing"))
        return summary

    def types(self) -> list[dict[str, Any]]:
        """Bytes and paths per type: folders, then files by extension, largest first (computed once)."""
        if self._types is None:
            self._types = self._count_types()
        return self._types

    def _count_types(self) -> list[dict[str, Any]]:
        groups: dict[str, list[int]] = {}
        for seen in self.plan.paths:
            if seen.kind == "directory":
                label = "folders"
            elif seen.kind == "file":
                name = seen.path.rsplit("/", 1)[-1]
                stem, dot, suffix = name.rpartition(".")
                usual = dot and stem and len(suffix) <= 12 and any(c.isalpha() for c in suffix)
                label = f".{suffix.lower()}" if usual else "files without extension"
            else:
                label = "links and other"
            group = groups.setdefault(label, [0, 0])
            group[0] += 1
            group[1] += seen.size
        ranked = sorted(groups.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
        shown = [
            {"type": _visible(label), "paths": count, "size": size, "size_text": human_size(size)}
            for label, (count, size) in ranked[:TYPES_SHOWN]
        ]
        rest = ranked[TYPES_SHOWN:]
        if rest:
            size = sum(v[1] for _, v in rest)
            shown.append(
                {
                    "type": f"{len(rest)} other types",
                    "paths": sum(v[0] for _, v in rest),
                    "size": size,
                    "size_text": human_size(size),
                }
            )
        return shown

    def largest(self, count: int) -> list[dict[str, Any]]:
        if self._largest is None or len(self._largest) < count:
            self._largest = heapq.nsmallest(count, self.plan.paths, key=lambda s: (-s.size, s.path))
        return [self.path_row(s) for s in self._largest[:count]]

    def csv_chunks(self) -> Iterator[str]:
        """The whole plan as CSV, a chunk of rows at a time: every path to remove, then every exception."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        rows = 0
        for seen in self._by_path:
            newest = _newest(seen)
            writer.writerow(
                [
                    "remove",
                    _cell(seen.path),
                    seen.kind,
                    seen.size,
                    human_size(seen.size),
                    seen.file_count if seen.kind == "directory" else 1 if seen.kind == "file" else 0,
                    iso_time(newest) or "",
                    iso_time(seen.mtime) or "",
                    "yes" if seen.complete else "no (at least)",
                    "",
                ]
            )
            rows += 1
            if rows % CSV_CHUNK_ROWS == 0:
                yield _drain(buffer)
        for row in self.plan.exceptions:
            item = self._exception_row(row)
            writer.writerow([item["status"], _cell(item["path"]), "", "", "", "", "", "", "", _cell(item["reason"])])
            rows += 1
            if rows % CSV_CHUNK_ROWS == 0:
                yield _drain(buffer)
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _cell(text: str) -> str:
    """A spreadsheet runs a cell that starts with = + - @ as a formula: such a name is kept as text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
