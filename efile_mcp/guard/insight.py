"""Seeing the tree: disk usage by child (dust/gdu style: the top N, the rest summed) and finding by filter.

Sizes everywhere: a folder's size is the sum of the regular files in its tree (a listing's 4096 B for the
folder itself is not counted; links are not followed and add nothing); `file_count` counts regular files.
The dry run and the person's form use the same definitions (guard/inspect.py).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from ..client.walk import DirListing, Entry, Listings, WalkStats, join
from ..models.results import Selection


@dataclass(slots=True)
class Totals:
    size: int = 0
    files: int = 0
    dirs: int = 0
    links: int = 0
    newest: float | None = None

    def see(self, mtime: float | None) -> None:
        if mtime is not None and (self.newest is None or mtime > self.newest):
            self.newest = mtime

    def count(self, entry: Entry) -> None:
        """One listed entry: a file adds its bytes, a folder or a link is counted (a link adds no bytes)."""
        self.see(entry.mtime)
        if entry.kind == "file":
            self.size += entry.size
            self.files += 1
        elif entry.kind == "directory":
            self.dirs += 1
        elif entry.kind == "symlink":
            self.links += 1

    def add(self, other: Totals) -> None:
        self.size += other.size
        self.files += other.files
        self.dirs += other.dirs
        self.links += other.links
        self.see(other.newest)


def incomplete_reason(stats: WalkStats, budget_setting: str = "max_entries") -> str | None:
    parts = []
    if stats.stopped == "entry_budget":
        parts.append(
            f"stopped after {stats.entries_seen} entries (the entry budget; raise {budget_setting} "
            "or start lower in the tree)"
        )
    elif stats.stopped == "deadline":
        parts.append(
            f"stopped at the time budget after {stats.entries_seen} entries (EFILE_WALK_MAX_SECONDS); "
            "start lower in the tree"
        )
    if stats.unreadable:
        parts.append(f"{len(stats.unreadable)} folder(s) could not be listed")
    if stats.incomplete_dirs and not stats.stopped:
        parts.append(f"{stats.incomplete_dirs} folder(s) could not be read whole (the server cut or repeated pages)")
    return "; ".join(parts) or None


@dataclass
class Usage:
    total: Totals = field(default_factory=Totals)
    #: Per direct child of the walk's root: (kind, totals).
    children: dict[str, tuple[str, Totals]] = field(default_factory=dict)


def usage_collector(root: str) -> tuple[Usage, Callable[[str, int, DirListing], None]]:
    """Aggregate by direct child on the fly: nothing of the listings is kept (memory stays flat)."""
    usage = Usage()
    prefix = root.rstrip("/") + "/"

    def on_dir(folder: str, depth: int, listing: DirListing) -> None:
        if depth == 0:
            child_totals = None
        else:
            top = folder[len(prefix) :].split("/", 1)[0]
            child_totals = usage.children[top][1] if top in usage.children else None
        for entry in listing.entries.values():
            if depth == 0:
                own = Totals()
                usage.children[entry.name] = (entry.kind, own)
                target = own
            else:
                target = child_totals if child_totals is not None else Totals()
            target.count(entry)
            usage.total.count(entry)

    return usage, on_dir


@dataclass(frozen=True, slots=True)
class Match:
    path: str
    kind: str
    size: int
    mtime: float | None
    #: False when a matched folder was not read whole: size is a lower bound.
    complete: bool = True


class Matcher:
    def __init__(self, selection: Selection, now: float) -> None:
        self.selection = selection
        day = 86400.0
        self.older = now - selection.older_than_days * day if selection.older_than_days is not None else None
        self.newer = now - selection.newer_than_days * day if selection.newer_than_days is not None else None

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


async def find(
    listings: Listings, selection: Selection, matcher: Matcher, **walk: object
) -> tuple[list[Match], WalkStats]:
    """Every match below `selection.path`, largest first. Folder totals from the walk's own listings."""
    root = selection.path
    candidates: list[tuple[str, str, int, float | None, int]] = []  # path, kind, size, mtime, depth
    dirs_seen: dict[str, DirListing] = {}

    def on_dir(folder: str, depth: int, listing: DirListing) -> None:
        if matcher.needs_folder_totals:
            dirs_seen[folder] = listing
        for entry in listing.entries.values():
            if matcher.name_matches(entry.name, entry.kind, depth + 1):
                candidates.append((join(folder, entry.name), entry.kind, entry.size, entry.mtime, depth + 1))

    stats = await listings.walk(root, on_dir, max_depth=matcher.read_depth(), **walk)  # type: ignore[arg-type]
    tree: dict[str, Totals] = {}
    unread: set[str] = set()
    if matcher.needs_folder_totals:
        tree, unread = _tree_totals(dirs_seen, stats)
    matches: list[Match] = []
    for path, kind, size, mtime, _depth in candidates:
        if kind == "directory":
            totals = tree.get(path, Totals())
            totals_size, newest = totals.size, totals.newest if totals.newest is not None else mtime
            if totals.newest is not None and mtime is not None:
                newest = max(totals.newest, mtime)
            if matcher.totals_match(totals_size, newest):
                matches.append(Match(path, kind, totals_size, newest, complete=path not in unread))
        elif matcher.totals_match(size, mtime):
            matches.append(Match(path, kind, size, mtime))
    matches.sort(key=lambda m: (-m.size, m.path))
    return matches, stats


def _tree_totals(dirs: dict[str, DirListing], stats: WalkStats) -> tuple[dict[str, Totals], set[str]]:
    """Bottom-up totals of every folder read; folders with an unread or cut part below them are lower bounds."""
    totals: dict[str, Totals] = {}
    partial: set[str] = {u.path for u in stats.unreadable}
    partial.update(path for path, listing in dirs.items() if not listing.complete)
    for folder in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        own = Totals()
        for entry in dirs[folder].entries.values():
            own.count(entry)
            if entry.kind == "directory":
                child = join(folder, entry.name)
                if child in totals:
                    own.add(totals[child])
                else:
                    partial.add(child)
                if child in partial:
                    partial.add(folder)
        totals[folder] = own
    return totals, partial
