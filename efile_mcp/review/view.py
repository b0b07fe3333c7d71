"""A plan as the person reads it: a folder tree with whole-tree totals, a flat list to page and search,
the types, the largest paths, the exceptions and a CSV of all of it — without holding the plan.

A plan may hold EFILE_MAX_PLAN_PATHS (1,000,000) paths, stored as rows (guard/seen.py). `PlanView.load`
reads them once, a chunk at a time, and keeps only what is bounded by the folders, not the paths: each
folder's whole-tree totals and child folders, the totals, the types and the largest paths; plus a few
compact arrays of 4 or 8 bytes a path (its size, its rank in path order, the plan rows in path order,
each folder's files in path order) — about 24 MB for a million paths. The path order is found by
sorting each chunk's names and merging the sorted chunks from a temporary file, so no list of every name
is ever made. The rows a page shows are then read from the store by position (rows close together in
one request), a search reads the rows again a chunk at a time (its matches' positions are kept, for
paging), and the CSV is written a window of rows at a time.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import pickle
import tempfile
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import anyio.to_thread

from ..guard.quarantine import QUARANTINE_DIR, is_quarantine_path
from ..guard.report import human_age, shown_name
from ..guard.seen import ROWS_PER_CHUNK, Plan, SeenPath, plan_rows
from ..models.times import iso_time
from ..models.units import human_size

if TYPE_CHECKING:
    from ..guard.store import StateStore

#: Most rows one JSON page carries.
PAGE_MAX = 500
PAGE_DEFAULT = 100
#: Types (extensions) listed on the page; the rest are summed as "other".
TYPES_SHOWN = 12
#: CSV rows written per chunk of the streamed download (and read from the store per window: CSV_WINDOW).
CSV_CHUNK_ROWS = 500
CSV_WINDOW = 5_000
CSV_COLUMNS = (
    "status", "path", "type", "bytes", "size", "files", "newest_change", "modified", "complete", "reason",
)  # fmt: skip
#: The largest paths kept while reading the plan (the page shows 10, the terminal 8).
LARGEST_KEPT = 20
#: Positions a page needs that are at most this far apart are read as one range of rows.
ROW_GAP = 64
#: A folder's children in one order (by size or by name), kept per plan: the folders last opened.
ORDERS_KEPT = 16
#: Searches whose matches (positions, 4 bytes each) are kept per plan, for paging through them.
SEARCHES_KEPT = 8
#: (name, id) pairs per block of a sorted chunk in the temporary file: what the merge holds per chunk.
RUN_BLOCK = 256
#: A folder with more children than this is ordered in a worker thread.
ORDER_IN_THREAD = 20_000


def _newest(seen: SeenPath) -> float | None:
    return seen.newest if seen.kind == "directory" else seen.mtime


def _files(seen: SeenPath) -> int:
    return seen.file_count if seen.kind == "directory" else 1 if seen.kind == "file" else 0


@dataclass(slots=True, eq=False)
class Folder:
    """A folder of the tree: one that holds plan paths (at any depth), with its whole tree's totals."""

    path: str
    parent: int
    size: int = 0
    files: int = 0
    #: Plan paths in this tree.
    items: int = 0
    newest: float | None = None
    complete: bool = True
    #: Its child folders (ids).
    folders: list[int] = field(default_factory=list)
    #: Its children that are plan paths and not folders of the tree (known once the view is ordered).
    leaves: int = 0
    #: The plan path this folder is, when it is one that holds other plan paths too (a plan never has them).
    seen: SeenPath | None = None

    def add(self, seen: SeenPath) -> None:
        self.size += seen.size
        self.files += _files(seen)
        self.items += 1
        newest = _newest(seen)
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest
        self.complete = self.complete and seen.complete

    def take(self, below: Folder) -> None:
        self.size += below.size
        self.files += below.files
        self.items += below.items
        if below.newest is not None and (self.newest is None or below.newest > self.newest):
            self.newest = below.newest
        self.complete = self.complete and below.complete


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


def type_label(seen: SeenPath) -> str:
    """What the types table counts a path as: folders, a file's extension, or neither."""
    if seen.kind == "directory":
        return "folders"
    if seen.kind != "file":
        return "links and other"
    path = seen.path
    name = path[path.rfind("/") + 1 :]
    dot = name.rfind(".")
    if dot <= 0 or len(name) - dot > 13:
        return "files without extension"
    suffix = name[dot + 1 :]
    label = _SUFFIX_LABELS.get(suffix)
    if label is None:
        label = f".{suffix.lower()}" if any(c.isalpha() for c in suffix) else "files without extension"
        if len(_SUFFIX_LABELS) < 4096:
            _SUFFIX_LABELS[suffix] = label
    return label


#: Labels of the extensions met (a cache of type_label's, bounded).
_SUFFIX_LABELS: dict[str, str] = {}


class _Runs:
    """Sorted runs of (path, id) pairs in an unnamed temporary file, merged into one path order."""

    def __init__(self) -> None:
        try:
            self.file: IO[bytes] = tempfile.TemporaryFile(prefix="efile-review-")  # noqa: SIM115 - see close()
        except OSError:  # no writable temporary folder: the runs in memory (about 80 bytes a path) rather than no page
            self.file = io.BytesIO()
        self.runs: list[list[int]] = []

    def add(self, pairs: list[tuple[str, int]]) -> None:
        pairs.sort()
        offsets = []
        for first in range(0, len(pairs), RUN_BLOCK):
            offsets.append(self.file.tell())
            pickle.dump(pairs[first : first + RUN_BLOCK], self.file, protocol=pickle.HIGHEST_PROTOCOL)
        self.runs.append(offsets)

    def _read(self, offsets: list[int]) -> Iterator[tuple[str, int]]:
        for offset in offsets:
            self.file.seek(offset)
            block: list[tuple[str, int]] = pickle.load(self.file)
            yield from block

    def merged(self, more: Iterable[tuple[str, int]]) -> Iterator[tuple[str, int]]:
        return heapq.merge(*(self._read(offsets) for offsets in self.runs), more)

    def close(self) -> None:
        self.file.close()


class PlanView:
    """Everything the page shows of one plan, from its header and its rows read once (`load`)."""

    def __init__(self, plan: Plan, now: float) -> None:
        """An empty view of `plan`: `load` and `of` make one and feed it the plan's rows."""
        self.plan = plan
        self.now = now
        self.count = 0
        self.directories = 0
        self.has_quarantine_path = False
        self.folders: list[Folder] = [Folder("/", -1)]
        self._folder_ids: dict[str, int] = {"/": 0}
        self._sizes = array("q")
        self._parents = array("I")
        #: Rows that are folders of the tree too (position -> folder id): none in a plan the dry run made.
        self._nested: dict[int, int] = {}
        self._types: dict[str, list[int]] = {}
        self._largest: list[SeenPath] = []
        self._runs: _Runs | None = None
        # Known once ordered (`_order`): ranks in path order, the rows in path order, each folder's leaves.
        self.ordered = False
        self._rank = array("I")
        self._folder_rank = array("I")
        self._by_path = array("I")
        self._leaf_start = array("I")
        self._leaves = array("I")
        #: Whether reading the rows in path order a window at a time costs far more than in plan order (None:
        #: not known yet; the CSV finds out).
        self._scattered: bool | None = None
        self._orders: OrderedDict[tuple[int, str], array[int]] = OrderedDict()
        self._searches: OrderedDict[str, array[int]] = OrderedDict()
        self.top = 0
        self.top_shown = "/"

    @property
    def root(self) -> Folder:
        return self.folders[0]

    # ------------------------------------------------------------------ reading the plan once

    @classmethod
    async def load(cls, store: StateStore, plan: Plan, now: float, *, ordered: bool = True) -> PlanView:
        """The view of a stored plan, its rows read a chunk at a time. `ordered`: also the path order (the
        page's tree and list need it, a summary does not). Raises LookupError when rows are missing."""
        view = cls(plan, now)
        if ordered:
            view._runs = _Runs()
        try:
            async for rows in plan_rows(store, plan):
                view.feed(rows)
            view._total_up()
            if ordered:
                late = await anyio.to_thread.run_sync(view._order)
                for position, seen in (await view._rows_at(store, sorted(late))).items():
                    view._own(late[position], seen)
        finally:
            if view._runs is not None:
                view._runs.close()
                view._runs = None
        return view

    @classmethod
    def of(cls, plan: Plan, now: float) -> PlanView:
        """The summary view of a plan whose paths are in memory (unordered: totals, types, largest)."""
        view = cls(plan, now)
        for first in range(0, len(plan.paths), ROWS_PER_CHUNK):
            view.feed(plan.paths[first : first + ROWS_PER_CHUNK])
        view._total_up()
        return view

    def _folder(self, path: str) -> int:
        """The id of the folder at `path`, made (with the folders above it) when new."""
        ids = self._folder_ids
        missing = []
        while path not in ids:
            missing.append(path)
            path = path.rsplit("/", 1)[0] or "/"
        fid = ids[path]
        for below in reversed(missing):
            new = len(self.folders)
            self.folders.append(Folder(below, fid))
            self.folders[fid].folders.append(new)
            ids[below] = fid = new
        return fid

    def feed(self, rows: Sequence[SeenPath]) -> None:
        """Add a chunk of the plan's rows, in plan order: into their folder's own totals (summed up the tree
        at the end), the types, the largest; and their names, sorted, into the runs."""
        ids, folders, types = self._folder_ids, self.folders, self._types
        first = self.count
        ordering = self._runs is not None  # a summary alone keeps nothing a path
        for position, seen in enumerate(rows, first):
            path = seen.path
            fid = ids.get(path.rsplit("/", 1)[0] or "/")
            if fid is None:
                fid = self._folder(path.rsplit("/", 1)[0] or "/")
            folder = folders[fid]
            folder.add(seen)
            if ordering:
                self._sizes.append(seen.size)
                self._parents.append(fid)
            own = ids.get(path)
            if own is not None:  # a folder of the tree already: this row is that folder
                self._nested[position] = own
                folders[own].seen = seen
            if seen.kind == "directory":
                self.directories += 1
            if QUARANTINE_DIR in path and is_quarantine_path(path):
                self.has_quarantine_path = True
            label = type_label(seen)
            group = types.get(label)
            if group is None:
                group = types[label] = [0, 0]
            group[0] += 1
            group[1] += seen.size
        self.count = first + len(rows)
        self._largest = heapq.nsmallest(LARGEST_KEPT, [*self._largest, *rows], key=lambda s: (-s.size, s.path))
        if self._runs is not None:
            self._runs.add([(seen.path, position) for position, seen in enumerate(rows, first)])

    def _total_up(self) -> None:
        """Each folder's whole tree: its own rows plus its child folders' trees (children come after parents)."""
        folders = self.folders
        for fid in range(len(folders) - 1, 0, -1):
            folders[folders[fid].parent].take(folders[fid])
        for fid in set(self._nested.values()):
            seen = folders[fid].seen
            if seen is not None:
                self._own(fid, seen)

    def _own(self, fid: int, seen: SeenPath) -> None:
        """A plan path that is a folder of the tree: its own row counts in its node (its parent has it already)."""
        folder = self.folders[fid]
        folder.seen = seen
        folder.add(seen)

    def _order(self) -> dict[int, int]:
        """The path order (a worker thread): every name's rank, the rows in path order, each folder's leaves in
        path order, the folder the tree starts at. Returns the rows found to be folders only now (position ->
        folder id), whose own rows the caller reads and adds."""
        assert self._runs is not None
        count, folders = self.count, self.folders
        rank = array("I", bytes(4 * count))
        folder_rank = array("I", bytes(4 * len(folders)))
        by_path = array("I")
        late: dict[int, int] = {}
        names = sorted((f.path, count + fid) for fid, f in enumerate(folders))
        previous: tuple[str, int] | None = None
        for number, (path, key) in enumerate(self._runs.merged(names)):
            if key < count:
                rank[key] = number
                by_path.append(key)
            else:
                fid = key - count
                folder_rank[fid] = number
                if previous is not None and previous[0] == path and previous[1] < count:
                    if previous[1] not in self._nested:  # a plan path that is a folder of the tree, seen first
                        late[previous[1]] = fid
                    self._nested[previous[1]] = fid
            previous = (path, key)
        leaves_of = [0] * (len(folders) + 1)
        parents = self._parents
        for position in range(count):
            if position not in self._nested:
                leaves_of[parents[position] + 1] += 1
        for fid, folder in enumerate(folders):
            folder.leaves = leaves_of[fid + 1]
            leaves_of[fid + 1] += leaves_of[fid]
        start = array("I", leaves_of)
        fill = array("I", leaves_of)
        leaves = array("I", bytes(4 * (count - len(self._nested))))
        for position in by_path:
            if position not in self._nested:
                fid = parents[position]
                leaves[fill[fid]] = position
                fill[fid] += 1
        self._rank, self._folder_rank, self._by_path = rank, folder_rank, by_path
        self._leaf_start, self._leaves = start, leaves
        self._parents = array("I")
        top = 0
        while True:
            node = folders[top]
            if node.seen is not None or node.leaves or len(node.folders) != 1:
                break
            only = node.folders[0]
            if folders[only].seen is not None:
                break
            top = only
        self.top, self.top_shown = top, _visible(folders[top].path)
        self.ordered = True
        return late

    # ------------------------------------------------------------------ reading rows back

    async def _rows_at(self, store: StateStore, positions: Sequence[int]) -> dict[int, SeenPath]:
        """The plan's rows at these positions, those close together read as one range."""
        wanted = sorted(set(positions))
        found: dict[int, SeenPath] = {}
        for first, last in _ranges(wanted):
            at = first
            async for rows in plan_rows(store, self.plan, first, last - first + 1):
                for seen in rows:
                    found[at] = seen
                    at += 1
        return {position: found[position] for position in wanted}

    def _scattered_in_plan(self) -> bool:
        """Whether the rows in path order, read a CSV window at a time, would take many more store requests or
        rows than reading the plan in its own order (a plan in a walk's order, folder by folder, does not)."""
        requests = rows = 0
        for first in range(0, len(self._by_path), CSV_WINDOW):
            for start, last in _ranges(sorted(self._by_path[first : first + CSV_WINDOW])):
                requests += 1
                rows += last - start + 1
        return requests > self.count // 100 + 10 or rows > 2 * self.count

    # ------------------------------------------------------------------ what a row says

    def _age(self, epoch: float | None) -> str | None:
        return human_age(epoch, self.now)

    def folder_row(self, fid: int) -> dict[str, Any]:
        node = self.folders[fid]
        seen = node.seen
        return {
            "path": node.path,
            "shown": _visible(node.path),
            "name": _visible(node.path.rsplit("/", 1)[-1] or "/"),
            "kind": seen.kind if seen is not None else "group",
            "in_plan": seen is not None,
            "size": node.size,
            "size_text": human_size(node.size),
            "files": node.files,
            "items": node.items,
            "newest": iso_time(node.newest),
            "age": self._age(node.newest),
            "complete": node.complete,
            "expandable": bool(node.folders or node.leaves),
        }

    def leaf_row(self, seen: SeenPath) -> dict[str, Any]:
        """A plan path in the tree (as a child of its folder)."""
        newest = _newest(seen)
        return {
            "path": seen.path,
            "shown": _visible(seen.path),
            "name": _visible(seen.path.rsplit("/", 1)[-1] or "/"),
            "kind": seen.kind,
            "in_plan": True,
            "size": seen.size,
            "size_text": human_size(seen.size),
            "files": _files(seen),
            "items": 1,
            "newest": iso_time(newest),
            "age": self._age(newest),
            "complete": seen.complete,
            "expandable": False,
        }

    def path_row(self, seen: SeenPath) -> dict[str, Any]:
        newest = _newest(seen)
        return {
            "path": seen.path,
            "shown": _visible(seen.path),
            "kind": seen.kind,
            "size": seen.size,
            "size_text": human_size(seen.size),
            "files": _files(seen),
            "newest": iso_time(newest),
            "age": self._age(newest),
            "complete": seen.complete,
        }

    # ------------------------------------------------------------------ pages

    async def _children_order(self, fid: int, sort: str) -> array[int]:
        """A folder's children in order, as ids: a row's position, or the plan's row count plus a folder id."""
        key = (fid, sort)
        known = self._orders.get(key)
        if known is None:
            folder = self.folders[fid]
            if folder.leaves + len(folder.folders) > ORDER_IN_THREAD:
                known = await anyio.to_thread.run_sync(lambda: self._sort_children(fid, sort))
            else:
                known = self._sort_children(fid, sort)
            self._orders[key] = known
            while len(self._orders) > ORDERS_KEPT:
                self._orders.popitem(last=False)
        self._orders.move_to_end(key)
        return known

    def _sort_children(self, fid: int, sort: str) -> array[int]:
        count, folders = self.count, self.folders
        leaves = self._leaves[self._leaf_start[fid] : self._leaf_start[fid + 1]]  # in path order already
        below = folders[fid].folders
        if sort == "name":
            if not below:
                return leaves
            rank, folder_rank = self._rank, self._folder_rank
            subfolders = sorted((folder_rank[child], count + child) for child in below)
            merged = heapq.merge(((rank[p], p) for p in leaves), subfolders)
            return array("I", (key for _, key in merged))
        # Largest first, then by name: one integer per child (size, rank, id) sorted, no tuple per child.
        width = (count + len(folders)).bit_length()
        top = 1 << 63
        sizes, rank, folder_rank = self._sizes, self._rank, self._folder_rank
        keys = [(((top - sizes[p]) << width | rank[p]) << width) | p for p in leaves]
        keys += [(((top - folders[c].size) << width | folder_rank[c]) << width) | (count + c) for c in below]
        keys.sort()
        mask = (1 << width) - 1
        return array("I", (k & mask for k in keys))

    async def children(
        self, store: StateStore, folder: str | None, offset: int, limit: int, sort: str = "size"
    ) -> dict[str, Any] | None:
        """One page of a folder's children (the top of the tree when `folder` is None); None: no such folder."""
        fid = self.top if not folder else self._folder_ids.get(folder)
        if fid is None:
            return None
        ordered = await self._children_order(fid, "name" if sort == "name" else "size")
        page = ordered[offset : offset + limit]
        rows = await self._rows_at(store, [key for key in page if key < self.count])
        return {
            "folder": self.folder_row(fid),
            "total": len(ordered),
            "offset": offset,
            "items": [
                self.leaf_row(rows[key]) if key < self.count else self.folder_row(key - self.count) for key in page
            ],
        }

    async def _matching(self, store: StateStore, needle: str) -> array[int]:
        """The positions of the rows whose path contains `needle` (casefolded), in path order; kept for paging.

        Within the matches of a search kept for a part of `needle` (typing on: "run" then "run07") when they
        are few; otherwise every row, read again a chunk at a time. The matches are marked in a bitmap (a
        byte a row) and taken in path order from it: no list of every match is made, nor sorted."""
        known = self._searches.get(needle)
        if known is None:
            narrower = [found for part, found in self._searches.items() if part in needle]
            within = min(narrower, key=len, default=None)
            if within is not None and len(within) <= self.count // 4:
                kept = array("I")
                for first in range(0, len(within), CSV_WINDOW):
                    window = within[first : first + CSV_WINDOW]
                    rows = await self._rows_at(store, window)
                    kept.extend(p for p in window if needle in rows[p].path.casefold())
                known = kept
            else:
                marked = bytearray(self.count)
                async for position in self._positions_matching(store, needle):
                    marked[position] = 1
                known = array("I", (p for p in self._by_path if marked[p]))
            self._searches[needle] = known
            while len(self._searches) > SEARCHES_KEPT:
                self._searches.popitem(last=False)
        self._searches.move_to_end(needle)
        return known

    async def _positions_matching(self, store: StateStore, needle: str) -> AsyncIterator[int]:
        """Every row whose path contains `needle`, in plan order. A row is stored as a JSON array whose first
        item is its path (guard/seen.py), so the stored text is looked at first and only a row whose text holds
        the needle is decoded (a needle with a character JSON escapes is looked for in decoded paths only)."""
        if not self.plan.has_rows or not needle.isprintable() or '"' in needle or "\\" in needle:
            position = 0
            async for rows in plan_rows(store, self.plan):
                for seen in rows:
                    if needle in seen.path.casefold():
                        yield position
                    position += 1
            return
        plan_id = self.plan.plan_id
        for first in range(0, self.count, ROWS_PER_CHUNK):
            wanted = min(ROWS_PER_CHUNK, self.count - first)
            stored = await store.load_plan_rows(plan_id, first, wanted)
            if len(stored) != wanted:
                raise LookupError(f"plan {plan_id} lost rows {first}-{first + wanted - 1} in the state store")
            for position, data in enumerate(stored, first):
                text = data.decode("utf-8", "surrogatepass")
                if needle in text.casefold() and needle in str(json.loads(text)[0]).casefold():
                    yield position

    async def paths(self, store: StateStore, query: str, offset: int, limit: int) -> dict[str, Any]:
        """One page of every plan path in path order, those containing `query` (any case) when it is given."""
        needle = query.casefold().strip()
        matching = await self._matching(store, needle) if needle else self._by_path
        page = matching[offset : offset + limit]
        rows = await self._rows_at(store, page)
        return {
            "query": query,
            "total": len(matching),
            "offset": offset,
            "items": [self.path_row(rows[position]) for position in page],
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
        summary.setdefault("would_remove", self.count)
        summary.setdefault("total_size", root.size)
        summary.setdefault("file_count", root.files)
        summary.setdefault("folder_count", self.directories)
        summary.setdefault("newest_modified", iso_time(root.newest))
        if not root.complete:
            summary.setdefault("lower_bound", True)
        summary.setdefault("refused", sum(1 for row in self.plan.exceptions if len(row) > 1 and row[1] == "refused"))
        summary.setdefault("missing", sum(1 for row in self.plan.exceptions if len(row) > 1 and row[1] == "missing"))
        return summary

    def types(self) -> list[dict[str, Any]]:
        """Bytes and paths per type: folders, then files by extension, largest first."""
        ranked = sorted(self._types.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
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
        return [self.path_row(s) for s in self._largest[: min(count, LARGEST_KEPT)]]

    async def csv_chunks(self, store: StateStore) -> AsyncIterator[str]:
        """The whole plan as CSV, a chunk of rows at a time: every path to remove (in path order, read a window
        at a time; in plan order when that order is far from the paths'), then every exception."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        written = 0
        async for seen in self._rows_for_csv(store):
            newest = _newest(seen)
            modified = iso_time(seen.mtime) or ""
            writer.writerow(
                [
                    "remove",
                    _cell(seen.path),
                    seen.kind,
                    seen.size,
                    human_size(seen.size),
                    _files(seen),
                    modified if newest == seen.mtime else iso_time(newest) or "",
                    modified,
                    "yes" if seen.complete else "no (at least)",
                    "",
                ]
            )
            written += 1
            if written % CSV_CHUNK_ROWS == 0:
                yield _drain(buffer)
        for row in self.plan.exceptions:
            item = self._exception_row(row)
            writer.writerow([item["status"], _cell(item["path"]), "", "", "", "", "", "", "", _cell(item["reason"])])
            written += 1
            if written % CSV_CHUNK_ROWS == 0:
                yield _drain(buffer)
        yield _drain(buffer)

    async def _rows_for_csv(self, store: StateStore) -> AsyncIterator[SeenPath]:
        if self.ordered and self._scattered is None:
            self._scattered = await anyio.to_thread.run_sync(self._scattered_in_plan)
        if self._scattered or not self.ordered:
            async for rows in plan_rows(store, self.plan):
                for seen in rows:
                    yield seen
            return
        for first in range(0, len(self._by_path), CSV_WINDOW):
            window = self._by_path[first : first + CSV_WINDOW]
            found = await self._rows_at(store, window)
            for position in window:
                yield found[position]


def _ranges(wanted: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Sorted positions as (first, last) ranges to read: positions at most ROW_GAP apart share one."""
    index = 0
    while index < len(wanted):
        first = last = wanted[index]
        index += 1
        while index < len(wanted) and wanted[index] - last <= ROW_GAP:
            last = wanted[index]
            index += 1
        yield first, last


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _cell(text: str) -> str:
    """A spreadsheet runs a cell that starts with = + - @ as a formula: such a name is kept as text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
