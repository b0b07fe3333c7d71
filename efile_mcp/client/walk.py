"""Reading directories whole and walking trees through `file/list`, within budgets, never following links.

    Listings     one call's cache of whole directory listings (and single-name look-ups): the dry run,
                 the execution's re-check and a selection's expansion ask for a directory once per call
    Listings.walk   a tree walk with bounded, adaptive concurrency, an entry budget and a deadline

Listing is where the docs and third parties disagree (efile-api.md §5), so a listing here:
- asks for large pages (most folders take one request) and falls back to the documented 1000 when a
  server refuses a large `limit`;
- detects a server that ignores `start` (the next page repeats the first) and stops, never looping or
  counting an entry twice; when `total` says more than could be read, the listing is marked incomplete;
- uses `children` (sub-folders, not cut by `limit`) to find folders a cut page left out.

Entries are kept slim (`Entry`): a full wire entry is ~3 KB with its extra fields, 300 MB at 100,000.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import anyio

from ..errors import ApiError, AuthError, EfileMcpError, NotFoundError, is_retryable
from ..models.times import iso_time as iso_time  # re-exported: the guard writes walk times with it
from ..models.times import parse_server_time
from ..models.wire import FileEntry
from ._groups import task_group
from .api import EfileApi

log = logging.getLogger("efile_mcp.client.walk")

EntryKind = Literal["file", "directory", "symlink", "other"]

#: Asked per page; third parties saw 6,000 and 100,000 answered whole. A server that refuses it gets 1000.
LARGE_PAGE = 5000
DOCUMENTED_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """What a walk keeps of one listed entry."""

    name: str
    kind: EntryKind
    size: int
    mtime: float | None

    @classmethod
    def of(cls, wire: FileEntry) -> Entry:
        return cls(wire.name, wire.kind, max(0, wire.size or 0), parse_server_time(wire.last_modified_time))


@dataclass(slots=True)
class DirListing:
    path: str
    entries: dict[str, Entry]
    #: False when the server said it holds more than could be read (a cut page, an ignored `start`).
    complete: bool = True
    total: int = 0


@dataclass(slots=True)
class Unreadable:
    path: str
    reason: str


@dataclass
class WalkStats:
    """What a walk did: how far it got and why it stopped early, if it did."""

    entries_seen: int = 0
    dirs_listed: int = 0
    requests: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)
    #: Folders not read whole (cut pages / ignored start) or not read at all (budget, deadline).
    incomplete_dirs: int = 0
    stopped: Literal["", "entry_budget", "deadline"] = ""

    @property
    def complete(self) -> bool:
        return not self.stopped and not self.incomplete_dirs and not self.unreadable


#: Called with (folder path, depth below the walk's root, its listing) for every folder read.
OnDir = Callable[[str, int, DirListing], None]
Progress = Callable[[int, int], Awaitable[None]]


def join(parent: str, name: str) -> str:
    return (parent.rstrip("/") or "") + "/" + name


class AdaptiveLimit:
    """AIMD concurrency: halve on a rate limit (911048, 429, 5xx retried below us), grow by one when calm."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.limiter = anyio.CapacityLimiter(self.maximum)
        self._calm = 0

    def pressure(self, exc: BaseException) -> None:
        if is_retryable(exc):
            self._calm = 0
            lowered = max(1, int(self.limiter.total_tokens) // 2)
            if lowered < self.limiter.total_tokens:
                log.info("listing slowed down to %d concurrent requests (%s)", lowered, exc)
                self.limiter.total_tokens = lowered

    def calm(self) -> None:
        self._calm += 1
        if self._calm >= 8 and self.limiter.total_tokens < self.maximum:
            self._calm = 0
            self.limiter.total_tokens = int(self.limiter.total_tokens) + 1


class Listings:
    """One tool call's view of the tree: every directory listed at most once (whole), links never followed."""

    def __init__(self, api: EfileApi, *, concurrency: int = 8, keep: bool = True) -> None:
        self._api = api
        self._limit = AdaptiveLimit(concurrency)
        self._keep = keep
        self._dirs: dict[str, DirListing] = {}
        self._named: dict[tuple[str, str], Entry | None] = {}
        self._page = LARGE_PAGE
        self.requests = 0

    def cached(self, path: str) -> DirListing | None:
        return self._dirs.get(path)

    async def _page_of(
        self, path: str, start: int, limit: int, keyword: str | None
    ) -> tuple[list[FileEntry], int, list[str]]:
        async with self._limit.limiter:
            self.requests += 1
            page = await self._api.list_dir(
                path,
                keyword=keyword,
                start=start,
                limit=limit,
                order_by="name",
                order="asc",
                on_retry=self._limit.pressure,
            )
        self._limit.calm()
        children = [child.path for child in page.children or () if child.path]
        return page.file_list, page.total, children

    async def _first_page(self, path: str, keyword: str | None) -> tuple[list[FileEntry], int, list[str]]:
        try:
            return await self._page_of(path, 0, self._page, keyword)
        except ApiError as exc:
            if exc.code != "10004" or self._page <= DOCUMENTED_PAGE:
                raise
            log.info("the server refused a page of %d entries (%s); using %d", self._page, exc, DOCUMENTED_PAGE)
            self._page = DOCUMENTED_PAGE
            return await self._page_of(path, 0, self._page, keyword)

    async def read_dir(self, path: str, *, keyword: str | None = None) -> DirListing:
        """The whole directory (or the entries matching `keyword`). Raises NotFoundError (911020) and the rest."""
        if keyword is None and path in self._dirs:
            return self._dirs[path]
        first, total, children = await self._first_page(path, keyword)
        entries: dict[str, Entry] = {}
        for wire in first:
            entries.setdefault(wire.name, Entry.of(wire))
        complete = True
        step = len(first)
        start = step
        first_names = [wire.name for wire in first[:3]]
        while step and len(entries) < total:
            page, _, _ = await self._page_of(path, start, step, keyword)
            if not page:
                break
            if [wire.name for wire in page[:3]] == first_names:
                log.info("the server ignores `start` when listing %s: read %d of %d entries", path, len(entries), total)
                break  # page 2 repeats page 1: going on would loop
            new = 0
            for wire in page:
                if wire.name not in entries:
                    entries[wire.name] = Entry.of(wire)
                    new += 1
            if not new:
                break
            start += len(page)
        if len(entries) < total:
            complete = False
        # Sub-folders a cut page left out still show in `children`: walkable, if not sized.
        for child in children:
            name = child.rstrip("/").rpartition("/")[2]
            if name and name not in entries and child.rstrip("/") == join(path, name):
                entries[name] = Entry(name, "directory", 0, None)
        listing = DirListing(path=path, entries=entries, complete=complete, total=max(total, len(entries)))
        if keyword is None and self._keep:
            self._dirs[path] = listing
        return listing

    async def entry(self, path: str) -> Entry | None:
        """The entry at `path` from its parent's listing; None when it (or its parent) does not exist."""
        parent, _, name = path.rpartition("/")
        parent = parent or "/"
        if parent in self._dirs:
            return self._dirs[parent].entries.get(name)
        key = (parent, name)
        if key not in self._named:
            try:
                listing = await self.read_dir(parent, keyword=name)
            except NotFoundError:
                self._named[key] = None
            else:
                found = listing.entries.get(name)
                if found is None and not listing.complete:
                    # keyWord is fuzzy and the answer was cut: read the folder whole before saying "absent".
                    found = (await self.read_dir(parent)).entries.get(name)
                self._named[key] = found
        return self._named[key]

    async def entries(self, paths: Iterable[str]) -> dict[str, Entry | EfileMcpError | None]:
        """Each path's entry (None: absent), one listing per distinct parent; a parent that cannot be read
        gives its paths the error. A parent wanted for several names is read whole."""
        by_parent: dict[str, list[str]] = {}
        for path in paths:
            by_parent.setdefault(path.rpartition("/")[0] or "/", []).append(path)
        found: dict[str, Entry | EfileMcpError | None] = {}

        async def look(parent: str, wanted: list[str]) -> None:
            try:
                if len(wanted) > 1 and parent not in self._dirs:
                    try:
                        await self.read_dir(parent)
                    except NotFoundError:
                        found.update(dict.fromkeys(wanted, None))
                        return
                for path in wanted:
                    found[path] = await self.entry(path)
            except AuthError:
                raise
            except EfileMcpError as exc:
                found.update(dict.fromkeys(wanted, exc))

        async with task_group() as tg:
            for parent, wanted in by_parent.items():
                tg.start_soon(look, parent, wanted)
        return found

    async def walk(
        self,
        root: str,
        on_dir: OnDir,
        *,
        max_depth: int | None = None,
        max_entries: int = 200_000,
        max_seconds: float = 40.0,
        progress: Progress | None = None,
        stats: WalkStats | None = None,
    ) -> WalkStats:
        """Read `root` and every folder below it (links are entries, never followed), calling `on_dir`.

        Stops scheduling new folders past `max_entries` or `max_seconds` and says so in the stats;
        a folder that cannot be read is recorded, not fatal (an auth failure is: nothing can be read).
        `max_depth` 0 reads `root` alone.
        """
        stats = stats or WalkStats()
        last_progress = -math.inf

        async def visit(path: str, depth: int) -> None:
            nonlocal last_progress
            if stats.entries_seen >= max_entries:
                stats.stopped = stats.stopped or "entry_budget"
                stats.incomplete_dirs += 1
                return
            try:
                listing = await self.read_dir(path)
            except AuthError:
                raise
            except EfileMcpError as exc:
                stats.unreadable.append(Unreadable(path, str(exc)))
                return
            stats.dirs_listed += 1
            stats.entries_seen += len(listing.entries)
            if not listing.complete:
                stats.incomplete_dirs += 1
            on_dir(path, depth, listing)
            if stats.entries_seen > max_entries:
                # Listings already in flight may overshoot the budget a little; none is started after it.
                stats.stopped = stats.stopped or "entry_budget"
                if any(entry.kind == "directory" for entry in listing.entries.values()):
                    stats.incomplete_dirs += 1
                return
            if progress is not None and anyio.current_time() - last_progress >= 0.5:
                last_progress = anyio.current_time()
                await progress(stats.entries_seen, stats.dirs_listed)
            if max_depth is not None and depth >= max_depth:
                return
            for entry in listing.entries.values():
                if entry.kind == "directory":
                    tg.start_soon(visit, join(path, entry.name), depth + 1)

        requests_before = self.requests
        with anyio.move_on_after(max_seconds) as scope:
            async with task_group() as tg:
                tg.start_soon(visit, root, 0)
        if scope.cancelled_caught:
            stats.stopped = "deadline"
        stats.requests += self.requests - requests_before
        return stats
