"""Seeing the tree: disk usage by child (dust/gdu style: the top N, the rest summed) and finding by filter.

Sizes everywhere: a folder's size is the sum of the regular files in its tree (a listing's 4096 B for the
folder itself is not counted; links are not followed and add nothing); `file_count` counts regular files.
The dry run and the person's form use the same definitions (guard/inspect.py).

Both are resumable walks (`UsageWalk`, `FindWalk`): what they hold is the walk's frontier, the sums of the
folders still open and a bounded ranking, never the listings or one row per file, so a walk that does not
finish in one call is saved (`to_json`) and read on by the next call, in this process or another.
"""

from __future__ import annotations

import fnmatch
import heapq
from dataclasses import dataclass
from typing import Any

from ..client.walk import (
    NOT_RANKED,
    ClosedDir,
    Entry,
    FilesPage,
    Floor,
    Listings,
    Progress,
    Totals,
    TreeWalk,
    WalkLimits,
    WalkStats,
    join,
)
from ..models.results import Selection
from .quarantine import is_quarantine_path

__all__ = ["FindWalk", "Match", "Matcher", "Totals", "UsageWalk", "find", "incomplete_reason"]


def incomplete_reason(stats: WalkStats, budget_setting: str = "max_entries", *, resumable: bool = False) -> str | None:
    parts = []
    go_on = "; call again with resume to read on" if resumable else "; start lower in the tree"
    if stats.stopped == "entry_budget":
        parts.append(f"stopped after {stats.entries_seen} entries (the entry budget, {budget_setting}){go_on}")
    elif stats.stopped == "deadline":
        parts.append(f"stopped at the time budget after {stats.entries_seen} entries (EFILE_WALK_MAX_SECONDS){go_on}")
    if stats.unreadable_count:
        parts.append(f"{stats.unreadable_count} folder(s) could not be listed")
    if stats.incomplete_dirs:
        parts.append(f"{stats.incomplete_dirs} folder(s) could not be read whole (the server cut or repeated pages)")
    return "; ".join(parts) or None


# ---------------------------------------------------------------------------------------------- usage


class _Ranked(str):
    """A child's name in the ranking, ordered backwards: among children of the same size the first names are
    kept (as `ls | head` would show them), so a folder listed in name order ranks nothing more once its
    floor is reached by children of one size (empty files: each one used to displace the floor)."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __le__(self, other: str) -> bool:
        return str.__ge__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)

    def __ge__(self, other: str) -> bool:
        return str.__le__(self, other)


class UsageWalk:
    """Disk usage below a folder as a resumable walk: the total, and its direct children ranked by size.

    Keeps the `KEPT` largest finished children (the rest summed; among children of one size, the first
    names): a flat folder of a million files holds 200 rows, not a million. Children still being read are
    ranked on what was read of them so far.
    """

    KEPT = 200

    def __init__(self, root: str) -> None:
        self.walk = TreeWalk(root, aggregate=True)
        #: The root's tree, once it is done.
        self.root_total: Totals | None = None
        #: min-heap of (size, files, name, kind, totals row): the largest finished children.
        self.ranked: list[tuple[int, int, str, str, list[Any]]] = []
        self.rest = Totals()
        self.rest_count = 0
        #: Direct child folders not finished: name -> their own mtime.
        self.open_children: dict[str, float | None] = {}

    @property
    def root(self) -> str:
        return self.walk.root

    @property
    def total(self) -> Totals:
        """Everything read so far: the root's tree when it is done, else the sums of the folders still open
        (each holds its own entries and its finished sub-folders')."""
        if self.root_total is not None:
            return self.root_total
        summed = Totals()
        for opened in self.walk.open.values():
            summed.add(opened.totals)
        return summed

    def on_entries(self, folder: str, depth: int, batch: list[Entry]) -> None:
        if depth != 0:
            return
        rest = self.rest
        full = len(self.ranked) >= self.KEPT
        # The floor (the smallest kept child) settles most entries by its size alone; a tie, by its files and
        # then its name (the first names are kept: one at or after it is not), compared as plain text.
        floor_size, floor_files, floor_name = self._floor() if full else (-1, 0, "")
        # What the floor settles is summed in locals and added to `rest` after the loop (attribute updates
        # per entry cost more than the test): `_rank` may add to `rest` meanwhile, which the sums do not touch.
        size_sum = file_count = link_count = count = 0
        newest: float | None = None
        for name, kind, size, mtime in batch:
            if kind == "directory":
                self.open_children[name] = mtime
                continue
            files = 1 if kind == "file" else 0
            if not files:
                size = 0
            if full and (
                size < floor_size
                or (size == floor_size and (files < floor_files or (files == floor_files and name >= floor_name)))
            ):
                # Smaller than every kept child (the common case in a flat folder): summed, nothing built.
                size_sum += size
                file_count += files
                if kind == "symlink":
                    link_count += 1
                if mtime is not None and (newest is None or mtime > newest):
                    newest = mtime
                count += 1
                continue
            own = Totals()
            own.count(Entry(name, kind, size, mtime))
            self._rank(name, kind, own)
            if len(self.ranked) >= self.KEPT:
                full = True
                floor_size, floor_files, floor_name = self._floor()
        rest.size += size_sum
        rest.files += file_count
        rest.links += link_count
        rest.see(newest)
        self.rest_count += count

    def on_closed(self, closed: ClosedDir) -> None:
        if closed.depth == 0:
            self.root_total = closed.totals
        if closed.depth != 1:
            return
        name = closed.path.rpartition("/")[2]
        own = Totals(dirs=1)
        own.see(self.open_children.pop(name, None))
        own.add(closed.totals)
        self._rank(name, "directory", own)

    def floor(self, depth: int) -> Floor:
        """What a page of files at `depth` is read against: below the root nothing is ranked; in the root, a
        file at or below the smallest kept child is only summed (`on_files`)."""
        if depth != 0:
            return NOT_RANKED
        if len(self.ranked) < self.KEPT:
            return (-1, None)  # every file is ranked until KEPT are
        size, files, name = self._floor()
        # A file of the floor's size ranks above it when the floor holds fewer files, or as many and its
        # name comes first: it is summed when the floor holds more, or as many and it comes at or after it.
        return (size, "" if files > 1 else name if files == 1 else None)

    def on_files(self, folder: str, depth: int, page: FilesPage) -> None:
        """A page of files read against `floor(depth)`: what was below it is summed; the rest ranked."""
        if depth != 0:
            return
        size, count, newest = page.below
        self.rest.size += size
        self.rest.files += count
        self.rest.see(newest)
        self.rest_count += count
        if page.above:
            self.on_entries(folder, depth, page.above)

    def _floor(self) -> tuple[int, int, str]:
        size, files, name, _, _ = self.ranked[0]
        return size, files, str(name)

    def _rank(self, name: str, kind: str, totals: Totals) -> None:
        item = (totals.size, totals.files, _Ranked(name), kind, totals.to_row())
        if len(self.ranked) < self.KEPT:
            heapq.heappush(self.ranked, item)
            return
        out = heapq.heappushpop(self.ranked, item)
        self.rest.add(Totals.from_row(out[4]))
        self.rest_count += 1

    def children(self) -> tuple[list[tuple[str, str, Totals]], Totals, int]:
        """All children known so far, largest first (finished, and partial sums of those being read), and
        the sum and count of those not kept."""
        rows = [(str(name), kind, Totals.from_row(row)) for _, _, name, kind, row in self.ranked]
        if self.open_children:
            partial = {name: Totals(dirs=1, newest=mtime) for name, mtime in self.open_children.items()}
            prefix = self.root.rstrip("/") + "/"
            for path, opened in self.walk.open.items():
                if path.startswith(prefix):
                    top = path[len(prefix) :].split("/", 1)[0]
                    if top in partial:
                        partial[top].add(opened.totals)
            rows += [(name, "directory", totals) for name, totals in partial.items()]
        rows.sort(key=lambda row: (-row[2].size, -row[2].files, row[0]))
        return rows, self.rest, self.rest_count

    async def read_on(self, listings: Listings, limits: WalkLimits, progress: Progress | None = None) -> WalkStats:
        return await listings.walk(
            self.walk, self.on_entries, limits=limits, on_closed=self.on_closed, progress=progress, summary=self
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "w": self.walk.to_json(),
            "t": self.root_total.to_row() if self.root_total is not None else None,
            "k": [[size, files, str(name), kind, row] for size, files, name, kind, row in self.ranked],
            "r": self.rest.to_row(),
            "n": self.rest_count,
            "c": self.open_children,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageWalk:
        usage = cls.__new__(cls)
        usage.walk = TreeWalk.from_json(data["w"])
        usage.root_total = Totals.from_row(data["t"]) if data["t"] is not None else None
        usage.ranked = [(int(s), int(f), _Ranked(n), str(k), list(r)) for s, f, n, k, r in data["k"]]
        heapq.heapify(usage.ranked)
        usage.rest = Totals.from_row(data["r"])
        usage.rest_count = int(data["n"])
        usage.open_children = dict(data["c"])
        return usage


# ---------------------------------------------------------------------------------------------- find


@dataclass(frozen=True, slots=True)
class Match:
    path: str
    kind: str
    size: int
    mtime: float | None
    #: False when a matched folder was not read whole: size is a lower bound.
    complete: bool = True
    #: (FindWalk cover) How many matches inside this folder it covers (they are not handed out apart).
    covers: int = 0

    def to_row(self) -> list[Any]:
        return [
            self.path,
            self.kind,
            self.size,
            self.mtime,
            int(self.complete),
            *([self.covers] if self.covers else []),
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Match:
        path, kind, size, mtime, complete, *rest = row
        return cls(str(path), str(kind), int(size), mtime, bool(complete), int(rest[0]) if rest else 0)


class Matcher:
    def __init__(self, selection: Selection, now: float) -> None:
        self.selection = selection
        self.now = now
        day = 86400.0
        self.older = now - selection.older_than_days * day if selection.older_than_days is not None else None
        self.newer = now - selection.newer_than_days * day if selection.newer_than_days is not None else None

    @property
    def filters_totals(self) -> bool:
        """Whether the selection filters by size or age (a folder's are its tree's)."""
        s = self.selection
        return any(v is not None for v in (s.min_size, s.max_size, self.older, self.newer))

    @property
    def needs_folder_totals(self) -> bool:
        s = self.selection
        return s.type != "file"

    def read_depth(self) -> int | None:
        """How deep the walk must read: matching files at depth d needs folders up to d-1; folders need their trees."""
        s = self.selection
        if s.max_depth is not None and not self.needs_folder_totals:
            return s.max_depth - 1
        return None

    def name_matches(self, name: str, kind: str, depth: int) -> bool:
        s = self.selection
        if s.max_depth is not None and depth > s.max_depth:
            return False
        if s.type == "file" and kind != "file":
            return False
        if s.type == "directory" and kind != "directory":
            return False
        if s.type == "any" and kind not in ("file", "directory"):
            return False  # links and others are never selected for removal
        return s.name is None or fnmatch.fnmatchcase(name, s.name)

    def totals_match(self, size: int, mtime: float | None) -> bool:
        s = self.selection
        if s.min_size is not None and size < s.min_size:
            return False
        if s.max_size is not None and size > s.max_size:
            return False
        if self.older is not None and (mtime is None or mtime >= self.older):
            return False
        return not (self.newer is not None and (mtime is None or mtime <= self.newer))


#: (FindWalk cover) Matches held back inside candidate folders at most, and the characters of their paths (their
#: rows also ride in a resumed state, saved at every call's end).
HELD_MAX = 20_000
HELD_CHARS_MAX = 2_000_000
_NOT_HELD = object()


class FindWalk:
    """Matches of a selection as a resumable walk: each call reads on until it has the matches it wants.

    A file matches as it is listed; a folder when its tree is done (its size and newest entry are its
    tree's). `found` holds the matches not yet handed out; `count`/`size` sum every match so far (`size`
    counts a folder's tree once, not its matches again).

    `cover` (a removal's selection): a match inside a folder that may still match (its name did, its tree is not
    done) is held back until that folder is done: a folder that matches covers them (they are dropped, counted in
    `covered`), one that does not lets them go on. So `found` never holds a path inside another match, and what
    is handed out is final: a plan can be written as it is found. Held matches are bounded (HELD_MAX): past it,
    the folders holding the most are given up as folder matches (`released`), with every candidate above them,
    and their matches go on alone: a path handed out must never be covered by a folder matched later.
    """

    def __init__(self, selection: Selection, now: float, *, cover: bool = False) -> None:
        self.selection = selection
        #: The clock when the search began: ages mean the same on every page.
        self.now = now
        self.matcher = Matcher(selection, now)
        self.skip_quarantine = not is_quarantine_path(selection.path)
        matcher = self.matcher
        self.walk = TreeWalk(selection.path, max_depth=matcher.read_depth(), aggregate=matcher.needs_folder_totals)
        self.found: list[Match] = []
        self.count = 0
        self.size = 0
        #: Candidate folders (the name matched) whose trees are being read: path -> own mtime.
        self.candidates: dict[str, float | None] = {}
        #: Bytes already counted in `size` for matches inside each open folder (so a folder match is not counted twice).
        self.below: dict[str, int] = {}
        #: While reading on for a page: how many matches it wants.
        self.want: int | None = None
        self.cover = cover and matcher.needs_folder_totals
        #: (cover) Matches held back, by the innermost candidate folder holding them.
        self.held: dict[str, list[Match]] = {}
        self.held_count = 0
        self.held_chars = 0
        #: (cover) Matches dropped because a folder matched around them; candidate folders given up (HELD_MAX).
        self.covered = 0
        self.released = 0

    def _holder(self, folder: str) -> str | None:
        """The innermost candidate folder at or above `folder` (below the search's root), if any."""
        candidates, root = self.candidates, self.walk.root
        if not candidates:
            return None
        path = folder
        while path != root and len(path) > len(root):
            if path in candidates:
                return path
            path = path.rpartition("/")[0] or "/"
        return None

    def _hand(self, match: Match, folder: str) -> None:
        """A final match into `found`, or (cover) held by the candidate folder around it."""
        holder = self._holder(folder) if self.cover else None
        if holder is None:
            self.found.append(match)
            return
        self.held.setdefault(holder, []).append(match)
        self.held_count += 1
        self.held_chars += len(match.path)
        if self.held_count > HELD_MAX or self.held_chars > HELD_CHARS_MAX:
            self._release()

    def _release(self) -> None:
        """Too many matches held: give up the biggest holder as a folder match, and every candidate above it (a
        folder matched later would cover paths already handed out), until half the bound is held."""
        root = self.walk.root
        while (self.held_count > HELD_MAX // 2 or self.held_chars > HELD_CHARS_MAX // 2) and self.held:
            path = max(self.held, key=lambda held: len(self.held[held]))
            while path != root and len(path) > len(root):
                if self.candidates.pop(path, _NOT_HELD) is not _NOT_HELD:
                    self.released += 1
                let_go = self._unhold(path)
                if let_go:
                    self.found.extend(let_go)
                path = path.rpartition("/")[0] or "/"

    def _unhold(self, holder: str) -> list[Match] | None:
        """The matches `holder` held, no longer counted as held."""
        held = self.held.pop(holder, None)
        if held:
            self.held_count -= len(held)
            self.held_chars -= sum(len(match.path) for match in held)
        return held

    def _matched(self, match: Match, folder: str) -> None:
        self._hand(match, folder)
        self.count += 1
        self.size += match.size
        if self.matcher.needs_folder_totals:
            self.below[folder] = self.below.get(folder, 0) + match.size

    def on_entries(self, folder: str, depth: int, batch: list[Entry]) -> int | None:
        for taken, entry in enumerate(batch):
            if self.want is not None and len(self.found) >= self.want:
                return taken  # a page's worth of matches is waiting: the rest is read by the next call
            if not self.matcher.name_matches(entry.name, entry.kind, depth + 1):
                continue
            path = join(folder, entry.name)
            if self.skip_quarantine and is_quarantine_path(path):
                continue  # quarantined entries are picked only when the search starts inside the quarantine
            if entry.kind == "directory":
                self.candidates[path] = entry.mtime
            elif self.matcher.totals_match(entry.size, entry.mtime):
                self._matched(Match(path, entry.kind, entry.size, entry.mtime), folder)
        return None

    def on_closed(self, closed: ClosedDir) -> None:
        inside = self.below.pop(closed.path, 0)
        parent = closed.path.rpartition("/")[0] or "/"
        held = self._unhold(closed.path) if self.cover else None
        if closed.path in self.candidates:
            mtime = self.candidates.pop(closed.path)
            newest = closed.totals.newest
            if newest is None or (mtime is not None and mtime > newest):
                newest = mtime
            # A tree holding an entry of unknown size or time (or of another kind) is neither under a size nor older
            # than an age, as far as anyone can tell: with such filters, it does not match.
            unknown = bool(closed.totals.unknown) and self.matcher.filters_totals
            if not unknown and self.matcher.totals_match(closed.totals.size, newest):
                covers = 0
                if held:  # covered by the folder: dropped (a folder among them covers its own as well)
                    covers = sum(1 + match.covers for match in held)
                    self.covered += len(held)  # (what they covered was counted when they closed)
                    held = None
                self._hand(Match(closed.path, "directory", closed.totals.size, newest, closed.complete, covers), parent)
                # Its matches inside were counted already: the folder's tree replaces them in the bytes.
                self.count += 1
                self.size += closed.totals.size - inside
                inside = closed.totals.size
        if held:  # the folder did not match: what it held goes on, to the candidate around it or out
            for match in held:
                self._hand(match, parent)
        if inside and closed.path != self.walk.root:
            self.below[parent] = self.below.get(parent, 0) + inside

    async def read_on(
        self,
        listings: Listings,
        limits: WalkLimits,
        *,
        want: int | None = None,
        progress: Progress | None = None,
    ) -> WalkStats:
        """Read on until the walk ends, the limits say stop, or `want` matches are waiting in `found` (then the
        walk stops at the entry after the last one taken: what is kept between pages is the frontier, and at
        most the folder matches that closed together, never a page of file matches)."""
        self.want = want
        try:
            return await listings.walk(
                self.walk,
                self.on_entries,
                limits=limits,
                on_closed=self.on_closed if self.matcher.needs_folder_totals else None,
                progress=progress,
                stop=(lambda: len(self.found) >= want) if want is not None else None,
                sequential=want is not None,
            )
        finally:
            self.want = None

    def take(self, limit: int) -> list[Match]:
        """Up to `limit` waiting matches, largest first; the rest wait for the next page."""
        self.found.sort(key=lambda m: (-m.size, m.path))
        page, self.found = self.found[:limit], self.found[limit:]
        return page

    @property
    def finished(self) -> bool:
        return self.walk.finished and not self.found

    def to_json(self) -> dict[str, Any]:
        return {
            "s": self.selection.model_dump(exclude_none=True),
            "t": self.now,
            "w": self.walk.to_json(),
            "f": [m.to_row() for m in self.found],
            "n": self.count,
            "z": self.size,
            "c": self.candidates,
            "b": self.below,
            "cv": [int(self.cover), self.covered, self.released],
            "h": {path: [m.to_row() for m in held] for path, held in self.held.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FindWalk:
        found = cls(Selection.model_validate(data["s"]), float(data["t"]))
        found.walk = TreeWalk.from_json(data["w"])
        found.found = [Match.from_row(row) for row in data["f"]]
        found.count = int(data["n"])
        found.size = int(data["z"])
        found.candidates = dict(data["c"])
        found.below = {str(k): int(v) for k, v in data["b"].items()}
        cover, found.covered, found.released = data.get("cv", [0, 0, 0])
        found.cover = bool(cover) and found.matcher.needs_folder_totals
        found.held = {str(k): [Match.from_row(row) for row in v] for k, v in data.get("h", {}).items()}
        found.held_count = sum(len(v) for v in found.held.values())
        found.held_chars = sum(len(m.path) for v in found.held.values() for m in v)
        return found


async def find(
    listings: Listings, selection: Selection, matcher: Matcher, *, limits: WalkLimits, progress: Progress | None = None
) -> tuple[list[Match], WalkStats]:
    """Every match below `selection.path` within `limits`, largest first (the removal's selection: all of them)."""
    walk = FindWalk(selection, matcher.now)
    stats = await walk.read_on(listings, limits, progress=progress)
    return walk.take(len(walk.found)), stats
