"""Reading directories and walking trees through `file/list`, within budgets, never following links.

    Listings        one call's reader: whole listings for look-ups (cached, bounded), single-name look-ups
    Listings.walk   reads on a `TreeWalk` (a resumable walk: its frontier and the aggregates of the folders
                    still open), page by page, with bounded adaptive concurrency, until it ends or a
                    `WalkLimits` (entries, deadline) or the caller says stop
    TreeWalk        serialises to JSON: a walk that does not finish in one call continues in the next one,
                    in another process or on another replica (the state store keeps it)

Memory is bounded by batches, never by the size of the tree: a folder is read a page at a time and each
page is handed to the caller and dropped; a folder's tree is summed into its parent (size, counts, newest,
and a fingerprint over every entry's name, type, size and mtime) when its last sub-folder is done, so only
the folders still being read are held. The frontier is a stack (depth first), which keeps it small.

Budgets are checked before every request, never after children are queued: a walk stops within one
in-flight request per worker of its budget, and what it did not read stays in the frontier, so a budget
bounds the work of one call, not what can be read.

Listing is where the docs and third parties disagree (efile-api.md §5), so a listing here:
- asks for large pages (most folders take one request) and falls back to the documented 1000 when a
  server refuses a large `limit`;
- reads the later pages of a large folder in parallel, none counted before the second page showed that the
  server honours `start`; a server that ignores `start` (the second page repeats the first) is detected and
  the folder marked incomplete, never looped over or counted twice;
- asks every later page from the entry before its offset: it must begin with the name read last, so a folder
  changed while it is read (files created or removed before the offset) never hands an entry twice nor leaves
  one out of a reading that says it is whole; a folder read in part resumes after that name the same way;
- uses `children` (sub-folders, not cut by `limit`) to find folders a cut page left out.

Entries are kept slim (`Entry`): a full wire entry is ~3 KB with its extra fields, 300 MB at 100,000. A walk
that only sums files and ranks the largest (disk_usage, a `Summary`) gets a page of regular files as a
`FilesPage` instead: its sums, and entries only for the files above the ranking's floor.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, Protocol

import anyio

from ..errors import ApiError, AuthError, EfileMcpError, NotFoundError, is_retryable
from ..models.times import iso_time as iso_time  # re-exported: the guard writes walk times with it
from ..models.times import parse_server_time
from ..models.wire import FileEntry, FileListResult
from ._groups import task_group
from .api import EfileApi

log = logging.getLogger("efile_mcp.client.walk")

EntryKind = Literal["file", "directory", "symlink", "other"]

#: Asked per page; third parties saw 6,000 and 100,000 answered whole. A server that refuses it gets 1000.
#: Not larger: a page is parsed whole (a wire entry is ~3 KB before it is slimmed), and the pages of a large
#: folder are read in parallel, so more, smaller pages are as fast as fewer large ones and hold less.
LARGE_PAGE = 5000
DOCUMENTED_PAGE = 1000
#: The rest of a folder larger than LARGE_PAGE is asked in pages of this size, HUGE_IN_FLIGHT at a time per
#: call (a server may read the whole folder for every page: fewer pages cost it less), a refusal falls back.
#: Not the largest a server takes (100,000 answered whole): the decoded answer of a page of 25,000 entries
#: is ~85 MB (50,000: ~165 MB), and a walk's memory is bounded by its largest page.
HUGE_PAGE = 25_000
#: Such pages out at once. Answers that arrive together are all read before the next request can leave (the
#: event loop runs every woken task, and reading a page is CPU), so a folder is read in waves of this many
#: pages, a round trip each: with 4, a 200,000-entry folder takes 3 round trips (a lister asking 100,000 a
#: page one after the other: 2; traced against the fake at 20 ms, with 2 it took 6). An answer is
#: decoded and read into slim entries with no await in between, so one decoded page is held at a time; the
#: others wait as received bytes (~10 MB a page).
HUGE_IN_FLIGHT = 4
#: Entries the per-call cache of whole listings holds at most (look-ups after a walk reuse them); beyond
#: it nothing more is cached, so a walk's memory does not grow with the tree.
CACHE_MAX_ENTRIES = 100_000
#: Sub-folders a cut reading left out, named by `children`, looked up one by one (each a request) to be walked.
CHILDREN_LOOKED_UP = 64
#: A folder read in part resumes after the last name it read, looked for in a page asked this many entries
#: (at most a quarter of what the call may still read) before the offset it stopped at: as many files removed
#: before it meanwhile are absorbed, and up to a page less this many added.
RESUME_OVERLAP = 64
#: Fingerprints are sums of per-entry hashes modulo 2**128: independent of the order pages arrive in,
#: and a folder's is its entries' plus its sub-folders'.
_FP_MOD = 1 << 128


class Entry(NamedTuple):
    """What a walk keeps of one listed entry (a tuple: a walk makes one per entry of the tree, so it is cheap)."""

    name: str
    kind: EntryKind
    size: int
    mtime: float | None

    @classmethod
    def of(cls, wire: FileEntry) -> Entry:
        # A file listed without its size is of an unknown kind to the walk: never matched by size, never summed.
        kind: EntryKind = "other" if wire.kind == "file" and wire.size is None else wire.kind
        return cls(wire.name, kind, max(0, wire.size or 0), _mtime(wire.last_modified_time))


#: Times repeat within a tree (files unpacked or copied together share them): parse each text once.
_mtime = functools.lru_cache(maxsize=8192)(parse_server_time)

_FLAG_TYPES = (bool, type(None))
_TYPE_KINDS: dict[str, EntryKind] = {
    **dict.fromkeys(("dir", "directory", "folder", "d"), "directory"),
    **dict.fromkeys(("file", "regular", "f", "-"), "file"),
    **dict.fromkeys(("link", "symlink", "l"), "symlink"),
}


def _page_parts(data: object) -> tuple[list[Any], int] | None:
    """(fileList, total) of a file/list `data` of the documented shape, else None."""
    if type(data) is not dict:
        return None
    items = data.get("fileList", [])
    total = data.get("total", 0)
    if type(items) is not list or type(total) is not int or "file_list" in data:
        return None
    return items, total


def _children_of(data: dict[str, Any]) -> list[str] | None:
    """The paths of a file/list `data`'s `children`; None when they are not of the documented shape."""
    children: list[str] = []
    raw_children = data.get("children")
    if raw_children is not None:
        if type(raw_children) is not list:
            return None
        for child in raw_children:
            if type(child) is not dict:
                return None
            where = child.get("path")
            if where is not None and type(where) is not str:
                return None
            if where:
                children.append(where)
    return children


@dataclass(slots=True)
class FilesPage:
    """A page of regular files read without an entry each, for a walk that only sums them and ranks the
    largest (disk_usage): their sums, and as entries only those above the floor it was read with.

    `below`: (bytes, count, newest) of the files at or below the floor; `above`: the others, as entries.
    """

    below: tuple[int, int, float | None]
    above: list[Entry]
    #: The first names of the page (a server ignoring `start` repeats them).
    head: tuple[str, ...]
    #: Its last name: a folder read on later resumes after it.
    tail: str
    #: A page asked from one entry before its offset: that first entry (not summed), which must be the name handed
    #: last (`_after_edge`).
    lead: Entry | None = None

    def __len__(self) -> int:
        return self.below[1] + len(self.above)

    def totals(self) -> Totals:
        size, count, newest = self.below
        summed = Totals(size, count, newest=newest)
        for entry in self.above:
            summed.count(entry)
        return summed


#: What a walk that only sums and ranks reads a page against: an entry of this size or less is only summed;
#: one of the same size too when its name is this or after it (None: ties are ranked). `NOT_RANKED`: all.
Floor = tuple[float, str | None]
NOT_RANKED: Floor = (math.inf, None)


def files_page(data: object, floor: Floor, lead: bool = False) -> tuple[FilesPage, int, list[str]] | None:
    """A file/list `data` whose entries are all regular files with every field the walk reads, read into a
    `FilesPage` (no entry made for a file at or below `floor`); None for any other page (`slim_page` reads it).

    ~0.25 µs an entry instead of ~0.7 for slim entries that are then counted and ranked one by one.
    """
    parts = _page_parts(data)
    if parts is None:
        return None
    items, total = parts
    floor_size, floor_name = floor
    first: Entry | None = None
    if lead and items:
        slim = _usual_entries(items[:1])
        if slim is None or (len(items) > 1 and items[1].get("name") == slim[0].name):
            return None  # (a lead listed twice: read as entries, placed after its last copy)
        first = slim[0]
    below_size = below_count = 0
    below_newest: float | None = None
    above: list[Entry] = []
    append = above.append
    new_entry, entry_cls, mtime_of = tuple.__new__, Entry, _mtime
    try:
        previous = first.name if first is not None else None
        for item in items[1:] if first is not None else items:
            name = item["name"]
            if name == previous:
                return None  # a name listed twice: read as entries, where it is counted once
            previous = name
            size = item["size"]
            mtime = item["lastModifiedTime"]
            if (
                item["isRegularFile"] is not True
                or item["isSymbolicLink"] is not False
                or item["isDirectory"] is not False
                or type(name) is not str
                or type(item["path"]) is not str
                or type(size) is not int
                or size < 0
                or (mtime is not None and type(mtime) is not str)
            ):
                return None
            moment = mtime_of(mtime)
            if size < floor_size or (size == floor_size and floor_name is not None and name >= floor_name):
                below_size += size
                below_count += 1
                if moment is not None and (below_newest is None or moment > below_newest):
                    below_newest = moment
            else:
                append(new_entry(entry_cls, (name, "file", size, moment)))
    except (KeyError, TypeError):  # a field missing, an entry that is not an object
        return None
    children = _children_of(data)  # type: ignore[arg-type]
    if children is None:
        return None
    head = tuple(item["name"] for item in items[:3])
    tail = items[-1]["name"] if items else ""
    return FilesPage((below_size, below_count, below_newest), above, head, tail, first), total, children


def raw_length(page: list[Entry] | FilesPage) -> int:
    """Entries the server answered for a page (a FilesPage's lead included)."""
    if isinstance(page, FilesPage):
        return len(page) + (page.lead is not None)
    return len(page)


def _after_edge(page: list[Entry] | FilesPage, last: str | None) -> list[Entry] | FilesPage | None:
    """A page asked from one entry before its offset, without what was handed before: it must hold `last`, the
    name handed last, and what follows that name is new. None when it does not (the folder changed while it was
    read: an entry before the offset removed, or more added than the page holds): the reading cannot be placed.

    An offset alone would hand an entry twice (a file created before it moves every later entry one place on)
    or skip one (a file removed), and a reading would still look whole."""
    if last is None:
        return None
    if isinstance(page, FilesPage):  # summed without names: only its lead can be checked
        return replace(page, lead=None) if page.lead is not None and page.lead.name == last else None
    at = _position(page, last)
    return None if at is None else page[at + 1 :]


def _placed_fairly(placed: list[Entry] | FilesPage, raw: int, asked: int, before: int, now: int) -> bool:
    """Whether a later page (asked from one entry before its offset: `raw` entries answered of `asked`) placed
    after the name read last can be read on from. Not when a whole page leads up to
    it (its entries moved a page on, or a server answering every page with its first), nor when it is further in
    than the folder grew meanwhile (`before` -> `now` entries): then the page is not where its offset says (a
    server ignoring `start` while the folder's first file goes, a name listed twice), and offsets counted from it
    would end the reading early while it looks whole."""
    new = raw_length(placed)
    if not new and raw == asked and raw > 1:
        return False
    moved_on = raw - new - 1  # entries before the name read last in this page
    return moved_on <= 0 or now - before >= moved_on


def _hand_placed(
    path: str,
    page: list[Entry] | FilesPage,
    raw: int,
    asked: int,
    at: int,
    before: int,
    now: int,
    hand: Callable[[list[Entry] | FilesPage, int], None],
    ends: dict[int, str],
) -> int | None:
    """Hand what a later page (asked from `at` - 1) holds after the name read last; returns where the reading got
    to, or None when the page cannot be placed (`_placed_fairly`: the folder changed while it was read)."""
    last = ends.get(at)
    placed = _after_edge(page, last)
    if placed is None or not _placed_fairly(placed, raw, asked, before, now):
        log.info("%s changed while it was read (%r moved or is gone): the rest is not read", path, last)
        return None
    hand(placed, at - 1 + raw - raw_length(placed))
    to = at - 1 + raw
    if last is not None and not raw_length(placed):
        ends[to] = last  # nothing new: the name read last still ends the reading here
    return to


def tail_of(page: list[Entry] | FilesPage) -> str | None:
    """The last name of a page (None when it is empty)."""
    if isinstance(page, FilesPage):
        return page.tail or None
    return page[-1].name if page else None


def head_of(page: list[Entry] | FilesPage) -> tuple[str, ...]:
    """The first names of a page."""
    if isinstance(page, FilesPage):
        return page.head
    return tuple(entry.name for entry in page[:3])


def slim_page(data: object) -> tuple[list[Entry], int, list[str]] | None:
    """A file/list `data` read straight into slim entries: (entries, total, children's paths).

    The walker reads every entry of a tree, and validating each into the wire model (`FileEntry`, extra
    fields kept) costs several times what the walk does with it. This reads the documented shape directly,
    with the same kinds as `FileEntry.kind` (flags first, then `type`); anything else (a missing or odd
    field, a snake_case key) returns None, and the caller validates the page with the wire model instead.
    """
    parts = _page_parts(data)
    if parts is None:
        return None
    items, total = parts
    entries = _usual_entries(items)
    if entries is None:
        entries = _entries(items)
        if entries is None:
            return None
    children = _children_of(data)  # type: ignore[arg-type]
    if children is None:
        return None
    return _once_each(entries), total, children


def _once_each(entries: list[Entry]) -> list[Entry]:
    """A page as the walk takes it: a name listed twice counts once (its first listing), and a name no folder can
    hold (empty, "." or "..", holding "/" or NUL) is kept as kind "other": never matched, never walked into, never a
    path of its own (`a/b` listed in a folder would name an entry inside another, read twice)."""
    seen: set[str] = set()
    kept: list[Entry] | None = None
    for at, entry in enumerate(entries):
        name = entry.name
        repeated = name in seen
        unnamable = entry.kind != "other" and (not name or name in (".", "..") or "/" in name or "\0" in name)
        if (repeated or unnamable) and kept is None:
            kept = entries[:at]
        if repeated:
            continue
        seen.add(name)
        if unnamable:
            entry = Entry(name, "other", entry.size, entry.mtime)
        if kept is not None:
            kept.append(entry)
    return entries if kept is None else kept


def _usual_entries(items: list[Any]) -> list[Entry] | None:
    """`fileList` read into slim entries when every entry has every field the walk reads, with the flags
    of a file, a folder or a link: None at the first entry that does not (then `_entries` reads the page).

    The same entries as `_entries`, ~20 % faster (subscripts instead of `get`, identity tests of the flags):
    a flat folder's walk is this loop, once per entry.
    """
    entries: list[Entry] = []
    append = entries.append
    new_entry, entry_cls, mtime_of = tuple.__new__, Entry, _mtime
    try:
        for item in items:
            name = item["name"]
            size = item["size"]
            mtime = item["lastModifiedTime"]
            link = item["isSymbolicLink"]
            folder = item["isDirectory"]
            regular = item["isRegularFile"]
            if type(name) is not str or type(item["path"]) is not str:
                return None
            if link is False and folder is False and regular is True:
                kind: EntryKind = "file"
            elif (link is False or link is None) and folder is True and (regular is False or regular is None):
                kind = "directory"
            elif (
                link is True
                and (folder is False or folder is True or folder is None)
                and (regular is False or regular is True or regular is None)
            ):
                kind = "symlink"
            else:
                return None
            if type(size) is not int or size < 0:
                if size is not None and type(size) is not int:
                    return None
                if size is None and kind == "file":
                    kind = "other"  # a file listed without its size (Entry.of)
                size = 0
            if mtime is not None and type(mtime) is not str:
                return None
            append(new_entry(entry_cls, (name, kind, size, mtime_of(mtime))))
    except (KeyError, TypeError):  # a field missing, an entry that is not an object
        return None
    return entries


def _entries(items: list[Any]) -> list[Entry] | None:
    """`fileList` read into slim entries, any field absent or null as the wire model allows; None when an
    entry is not of the documented shape (the caller then validates the page with the wire model)."""
    entries: list[Entry] = []
    append = entries.append
    # No object is made per entry but the entry itself: every allocation counts towards the garbage
    # collector's next pass, which in a server traverses the whole heap and the decoded page with it.
    new_entry, entry_cls, mtime_of, flag_types = tuple.__new__, Entry, _mtime, _FLAG_TYPES
    for item in items:
        if type(item) is not dict:
            return None
        name, size, mtime = item.get("name"), item.get("size"), item.get("lastModifiedTime")
        if (
            type(name) is not str
            or type(item.get("path")) is not str
            or (size is not None and type(size) is not int)
            or (mtime is not None and type(mtime) is not str)
        ):
            return None
        link, folder, regular = item.get("isSymbolicLink"), item.get("isDirectory"), item.get("isRegularFile")
        if (
            link.__class__ not in flag_types
            or folder.__class__ not in flag_types
            or regular.__class__ not in flag_types
        ):
            return None
        if link:
            kind: EntryKind = "symlink"
        elif folder:
            kind = "directory"
        elif regular:
            kind = "file"
        else:
            named = item.get("type")
            if named is not None and type(named) is not str:
                return None
            kind = _TYPE_KINDS.get((named or "").lower(), "other")
        if size is None and kind == "file":
            kind = "other"  # a file listed without its size (Entry.of)
        # tuple.__new__ directly: a NamedTuple's own constructor is a Python call, per entry of the tree.
        append(new_entry(entry_cls, (name, kind, size if size and size > 0 else 0, mtime_of(mtime))))
    return entries


def _slim(page: FileListResult) -> tuple[list[Entry], int, list[str]]:
    entries = _once_each([Entry.of(wire) for wire in page.file_list])
    return entries, page.total, [c.path for c in page.children or () if c.path]


@dataclass(slots=True)
class Totals:
    """A tree's sums: bytes and count of regular files, folders, links, and the newest mtime seen; `unknown`
    counts the entries listed without a time, or of another kind (a file listed without a size is one: its
    size and the tree's are not known)."""

    size: int = 0
    files: int = 0
    dirs: int = 0
    links: int = 0
    newest: float | None = None
    unknown: int = 0

    def see(self, mtime: float | None) -> None:
        if mtime is not None and (self.newest is None or mtime > self.newest):
            self.newest = mtime

    def count(self, entry: Entry) -> None:
        """One listed entry: a file adds its bytes, a folder or a link is counted (a link adds no bytes)."""
        self.see(entry.mtime)
        if entry.mtime is None or entry.kind == "other":
            self.unknown += 1
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
        self.unknown += other.unknown
        self.see(other.newest)

    def to_row(self) -> list[Any]:
        return [self.size, self.files, self.dirs, self.links, self.newest, *([self.unknown] if self.unknown else [])]

    @classmethod
    def from_row(cls, row: list[Any]) -> Totals:
        size, files, dirs, links, newest, *rest = row
        return cls(int(size), int(files), int(dirs), int(links), newest, int(rest[0]) if rest else 0)


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


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """What one call may spend reading trees: entries listed, and a deadline on anyio's clock.

    One value per call, shared by every walk of the call (`less` gives what is left after some entries).
    """

    max_entries: int
    deadline: float

    @classmethod
    def starting_now(cls, max_entries: int, max_seconds: float) -> WalkLimits:
        return cls(max_entries, anyio.current_time() + max_seconds)

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - anyio.current_time())

    def less(self, entries: int) -> WalkLimits:
        return WalkLimits(max(0, self.max_entries - entries), self.deadline)


@dataclass
class WalkStats:
    """What a walk did: how far it got and why it stopped early, if it did. Counts cover every call of a resumed walk."""

    entries_seen: int = 0
    dirs_listed: int = 0
    requests: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)
    #: Folders not read whole (cut pages / ignored start) or, when the walk stopped, left unread.
    incomplete_dirs: int = 0
    stopped: Literal["", "entry_budget", "deadline", "caller"] = ""
    #: Unreadable folders beyond those kept in `unreadable` (a walk keeps the first few hundred).
    unreadable_more: int = 0

    @property
    def complete(self) -> bool:
        return not self.stopped and not self.incomplete_dirs and not self.unreadable

    @property
    def unreadable_count(self) -> int:
        return len(self.unreadable) + self.unreadable_more


#: Unreadable folders a walk names at most (the rest are counted): a walk's state stays small.
UNREADABLE_KEPT = 200


@dataclass(slots=True)
class OpenDir:
    """A folder whose tree is not read whole yet: its sums so far, and how many parts are still out."""

    depth: int
    #: Sub-folders not closed yet, plus 1 while its own listing is not read to the end.
    pending: int = 1
    totals: Totals = field(default_factory=Totals)
    fingerprint: int = 0
    #: False once anything in its tree could not be read whole.
    complete: bool = True


@dataclass(frozen=True, slots=True)
class ClosedDir:
    """A folder whose whole tree was read (`complete` False: some part of it could not be)."""

    path: str
    depth: int
    totals: Totals
    fingerprint: int
    complete: bool


#: A batch of one folder's entries (a page): (folder path, its depth below the walk's root, the entries).
#: It may return how many of them it took (None: all): the rest stays unread, for the next call.
OnEntries = Callable[[str, int, list[Entry]], int | None]
Batch = Callable[[list[Entry] | FilesPage], int | None]
#: The floor a page is read against, asked when it is read (the ranking's floor only rises).
FloorOf = Callable[[], Floor]


class Summary(Protocol):
    """A walk's consumer that only sums files and ranks the largest (disk_usage): pages of regular files
    are read for it into `FilesPage`s, not an entry each."""

    def floor(self, depth: int) -> Floor: ...

    def on_files(self, folder: str, depth: int, page: FilesPage) -> None: ...


#: A folder whose tree is done (only when the walk aggregates): its sums over the whole tree below it.
OnClosed = Callable[[ClosedDir], None]
Progress = Callable[[int, int], Awaitable[None]]


#: A folder still to read: (path, depth, page offset, the first names of its first page when offset > 0, the
#: last name read before that offset).
Pending = tuple[str, int, int, tuple[str, ...], str | None]


def join(parent: str, name: str) -> str:
    return (parent.rstrip("/") or "") + "/" + name


def parent_of(path: str) -> str:
    return path.rpartition("/")[0] or "/"


class TreeWalk:
    """One walk below `root`, resumable: the folders still to read (a stack) and the aggregates of the
    folders whose trees are not done. `to_json`/`from_json` carry it across calls.

    `max_depth` 0 reads `root` alone. `aggregate` sums trees bottom-up and reports closed folders;
    `fingerprint` also hashes every entry into them (the removal's re-check).
    """

    def __init__(
        self, root: str, *, max_depth: int | None = None, aggregate: bool = True, fingerprint: bool = False
    ) -> None:
        self.root = root
        self.max_depth = max_depth
        self.aggregate = aggregate
        self.fingerprint = fingerprint
        #: Folders to read: (path, depth, page offset, names that began its first page, the last name read). An
        #: offset > 0 is a large folder read in part; the first names tell a server that ignores `start` when the
        #: reading resumes, the last name where it resumes when entries were added or removed before it meanwhile.
        self.frontier: list[Pending] = [(root, 0, 0, (), None)]
        self.open: dict[str, OpenDir] = {}
        self.stats = WalkStats()

    @property
    def finished(self) -> bool:
        return not self.frontier and not self.open

    @property
    def folders_pending(self) -> int:
        return len(self.frontier)

    def _relative(self, folder: str, name: str) -> str:
        return join(folder, name)[len(self.root.rstrip("/")) + 1 :]

    def _add_entries(self, folder: str, depth: int, entries: list[Entry]) -> None:
        opened = self.open.get(folder) if self.aggregate else None
        descend = self.max_depth is None or depth < self.max_depth
        if opened is not None:
            # Totals.count, inlined: this loop runs once per entry of the tree.
            totals = opened.totals
            size, files, dirs, links, newest = totals.size, totals.files, totals.dirs, totals.links, totals.newest
            unknown = totals.unknown
            for entry in entries:
                kind, mtime = entry.kind, entry.mtime
                if mtime is None:
                    unknown += 1
                elif newest is None or mtime > newest:
                    newest = mtime
                if kind == "file":
                    size += entry.size
                    files += 1
                elif kind == "directory":
                    dirs += 1
                elif kind == "symlink":
                    links += 1
                elif kind == "other":
                    unknown += 1
            totals.size, totals.files, totals.dirs, totals.links, totals.newest = size, files, dirs, links, newest
            totals.unknown = unknown
            if self.fingerprint:
                # One entry's share of a fingerprint: its path below the walk's root, type, size and mtime, hashed
                # (blake2b, 128 bits) and summed; the folder's relative path is made once a page.
                summed = opened.fingerprint
                below, blake2b, from_bytes = self._relative(folder, ""), hashlib.blake2b, int.from_bytes
                for entry in entries:
                    text = f"{below}{entry.name}\0{entry.kind}\0{entry.size}\0{entry.mtime!r}"
                    summed += from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest(), "big")
                opened.fingerprint = summed % _FP_MOD
        if descend:
            for entry in entries:
                if entry.kind == "directory":
                    self.frontier.append((join(folder, entry.name), depth + 1, 0, (), None))
                    if opened is not None:
                        opened.pending += 1

    def _add_files(self, folder: str, page: FilesPage) -> None:
        """A page of regular files read without an entry each (never in a walk that keeps fingerprints)."""
        assert not self.fingerprint
        opened = self.open.get(folder) if self.aggregate else None
        if opened is not None:
            opened.totals.add(page.totals())

    def _begin(self, folder: str, depth: int) -> None:
        if self.aggregate and folder not in self.open:
            self.open[folder] = OpenDir(depth)

    def _end(self, folder: str, *, complete: bool, on_closed: OnClosed | None) -> None:
        """`folder`'s own listing is read (or could not be): close it, and every ancestor it was the last part of."""
        if not self.aggregate:
            return
        opened = self.open.get(folder)
        if opened is None:
            return
        opened.complete = opened.complete and complete
        opened.pending -= 1
        path = folder
        while opened is not None and opened.pending <= 0:
            del self.open[path]
            closed = ClosedDir(path, opened.depth, opened.totals, opened.fingerprint, opened.complete)
            if on_closed is not None:
                on_closed(closed)
            if path == self.root:
                return
            path = parent_of(path)
            parent = self.open.get(path)
            if parent is None:
                return
            parent.totals.add(opened.totals)
            parent.fingerprint = (parent.fingerprint + opened.fingerprint) % _FP_MOD
            parent.complete = parent.complete and opened.complete
            parent.pending -= 1
            opened = parent

    def partial_below(self, prefix: str) -> Totals:
        """The sums of the open folders at or below `prefix` (what was read of trees not done)."""
        summed = Totals()
        for path, opened in self.open.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                summed.add(opened.totals)
        return summed

    # ------------------------------------------------------------------ state

    def to_json(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "v": 1,
            "r": self.root,
            "d": self.max_depth,
            "a": int(self.aggregate),
            "f": int(self.fingerprint),
            "q": [list(item) for item in self.frontier],
            "o": [
                [path, o.depth, o.pending, o.totals.to_row(), format(o.fingerprint, "x"), int(o.complete)]
                for path, o in self.open.items()
            ],
            "s": [
                stats.entries_seen,
                stats.dirs_listed,
                stats.requests,
                stats.incomplete_dirs,
                [[u.path, u.reason] for u in stats.unreadable],
                stats.unreadable_more,
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeWalk:
        walk = cls(data["r"], max_depth=data["d"], aggregate=bool(data["a"]), fingerprint=bool(data["f"]))
        walk.frontier = [
            (
                str(p),
                int(d),
                int(s),
                tuple(str(n) for n in names),
                None if not rest or rest[0] is None else str(rest[0]),
            )
            for p, d, s, names, *rest in data["q"]
        ]
        walk.open = {
            str(path): OpenDir(int(depth), int(pending), Totals.from_row(totals), int(fp, 16), bool(complete))
            for path, depth, pending, totals, fp, complete in data["o"]
        }
        seen, listed, requests, incomplete, unreadable, more = data["s"]
        walk.stats = WalkStats(
            entries_seen=int(seen),
            dirs_listed=int(listed),
            requests=int(requests),
            incomplete_dirs=int(incomplete),
            unreadable=[Unreadable(str(p), str(r)) for p, r in unreadable],
            unreadable_more=int(more),
        )
        return walk


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


_NO_LIMIT = contextlib.nullcontext()


def _position(page: list[Entry] | FilesPage, name: str | None) -> int | None:
    """Where `name` is in a page of entries, its last copy (a server listing a name twice); None: not there."""
    if isinstance(page, FilesPage):
        return None
    for at in range(len(page) - 1, -1, -1):
        if page[at].name == name:
            return at
    return None


class _Refused(Exception):
    """The server refused the page size asked (10004) before anything of that size was counted."""


class _Stop(Exception):
    """A budget ran out before a request: the request was not sent.

    args: (offset to resume at[, the folder's first names, the last name read before the offset]).
    """


class _Gate:
    """One walk call's budget, asked before every request: how many entries it may ask for (0: stop).

    Entries asked for by requests in flight are reserved, so concurrent requests cannot overrun the budget
    together; a request granted less than a page closes the gate (what it leaves is the next call's).
    """

    def __init__(self, limits: WalkLimits, stats: WalkStats, stop: Callable[[], bool] | None, slots: int = 1) -> None:
        self.limits = limits
        self.slots = slots
        self.stats = stats
        self.stop = stop
        self.start = stats.entries_seen
        self.reserved = 0

    def reason(self) -> str:
        stats = self.stats
        if stats.stopped:
            return stats.stopped
        if stats.entries_seen - self.start >= self.limits.max_entries:
            stats.stopped = "entry_budget"
        elif anyio.current_time() >= self.limits.deadline:
            stats.stopped = "deadline"
        elif self.stop is not None and self.stop():
            stats.stopped = "caller"
        return stats.stopped

    def grant(self, wanted: int, *, whole: bool = False) -> int:
        """Entries a request may ask for: up to `wanted`, 0 when it must not go out (`whole`: all or nothing)."""
        if self.reason():
            return 0
        allowed = self.limits.max_entries - (self.stats.entries_seen - self.start) - self.reserved
        if allowed <= 0 or (whole and allowed < wanted):
            return 0  # requests in flight hold the rest; they may bring less than they asked for
        if not whole and allowed < wanted * self.slots:
            # Near the end of the budget, share it between the requests that may be in flight, so they still
            # go out together (a folder larger than its share is read on from where its page ended).
            wanted = min(wanted, max(allowed // self.slots, min(allowed, DOCUMENTED_PAGE)))
        granted = min(wanted, allowed)
        self.reserved += granted
        return granted

    def settle(self, granted: int) -> None:
        self.reserved -= granted

    def room(self) -> int:
        """Entries requests could still be granted now (0 when the walk must stop)."""
        if self.reason():
            return 0
        return self.limits.max_entries - (self.stats.entries_seen - self.start) - self.reserved


class Listings:
    """One tool call's reader: whole listings cached for look-ups (bounded), trees walked page by page."""

    def __init__(self, api: EfileApi, *, concurrency: int = 8, keep: bool = True) -> None:
        self._api = api
        self._limit = AdaptiveLimit(concurrency)
        self._keep = keep
        self._dirs: dict[str, DirListing] = {}
        self._cached_entries = 0
        self._named: dict[tuple[str, str], Entry | None] = {}
        self._page = LARGE_PAGE
        self._huge = HUGE_PAGE
        #: A server seen answering a later page with the first one: later pages are no longer asked before
        #: the second page has shown that `start` is honoured for the folder.
        self._start_ignored = False
        #: Pages larger than LARGE_PAGE: HUGE_IN_FLIGHT at a time (their answers are what a walk holds at its largest).
        self._huge_pages = anyio.CapacityLimiter(HUGE_IN_FLIGHT)
        self.requests = 0

    def cached(self, path: str) -> DirListing | None:
        return self._dirs.get(path)

    def _cache(self, listing: DirListing) -> None:
        if self._keep and self._cached_entries + len(listing.entries) <= CACHE_MAX_ENTRIES:
            self._dirs[listing.path] = listing
            self._cached_entries += len(listing.entries)

    async def _page_of(
        self,
        path: str,
        start: int,
        limit: int,
        keyword: str | None,
        gate: _Gate | None = None,
        *,
        whole: bool = False,
        floor: FloorOf | None = None,
        lead: bool = False,
    ) -> tuple[list[Entry] | FilesPage, int, list[str], int]:
        """One page: (entries, total, children, the limit asked). Raises _Stop when the gate grants nothing.
        `lead`: asked from one entry before its offset (a FilesPage keeps that entry apart, unsummed)."""
        granted = 0
        fast = getattr(self._api, "list_dir_data", None)  # EfileApi has it; a test's stand-in may not
        # A large page holds its slot until it is read into slim entries: one decoded large page at a time.
        async with self._huge_pages if limit > self._page else _NO_LIMIT:
            try:
                async with self._limit.limiter:
                    # Asked once the request may go out, not when it was queued: a queue never overruns a budget.
                    if gate is not None:
                        limit = granted = gate.grant(limit, whole=whole)
                        if not limit:
                            raise _Stop(start)
                    self.requests += 1
                    arguments: dict[str, Any] = {
                        "keyword": keyword,
                        "start": start,
                        "limit": limit,
                        "order_by": "name",
                        "order": "asc",
                        "on_retry": self._limit.pressure,
                    }
                    answer = await (fast or self._api.list_dir)(path, **arguments)
                # Read once other folders' requests may go out.
                # Without the collector's passes: a page makes an entry per entry of the folder, and each
                # pass it triggers would traverse the decoded answer too (and, in a server, the whole heap).
                # No await in between, so nothing else runs meanwhile; what it leaves is collected later.
                collecting = gc.isenabled()
                gc.disable()
                try:
                    read: tuple[list[Entry] | FilesPage, int, list[str]] | None
                    if fast is None:
                        read = _slim(answer)
                    else:
                        read = files_page(answer, floor(), lead) if floor is not None else None
                        if read is None:
                            read = slim_page(answer)
                finally:
                    if collecting:
                        gc.enable()
                if read is None:  # anything unusual: the wire model's validation and its error, as before
                    read = _slim(self._api.parse_list(answer))
                del answer
                if limit <= self._page:
                    # Let the requests this answer's slot woke go out before this page is counted: answers that
                    # arrive together are otherwise all handled before any next request leaves, and a walk
                    # moves in waves (a round trip, then every page's work). Slim entries only are held here;
                    # a large page's answer is handled straight through. Still reserved: never over budget.
                    await anyio.lowlevel.checkpoint()
            finally:
                # Settled when the caller is about to count the entries (no await in between): never uncounted.
                if gate is not None and granted:
                    gate.settle(granted)
        self._limit.calm()
        entries, total, children = read
        return entries, total, children, limit

    async def _first_page(
        self, path: str, start: int, keyword: str | None, gate: _Gate | None = None, floor: FloorOf | None = None
    ) -> tuple[list[Entry] | FilesPage, int, list[str], int]:
        try:
            return await self._page_of(path, start, self._page, keyword, gate, floor=floor)
        except ApiError as exc:
            if exc.code != "10004" or self._page <= DOCUMENTED_PAGE:
                raise
            log.info("the server refused a page of %d entries (%s); using %d", self._page, exc, DOCUMENTED_PAGE)
            self._page = DOCUMENTED_PAGE
            return await self._page_of(path, start, self._page, keyword, gate, floor=floor)

    async def read_dir(self, path: str, *, keyword: str | None = None) -> DirListing:
        """The whole directory (or the entries matching `keyword`). Raises NotFoundError (911020) and the rest."""
        if keyword is None and path in self._dirs:
            return self._dirs[path]
        entries: dict[str, Entry] = {}

        def keep(batch: list[Entry] | FilesPage) -> None:
            assert not isinstance(batch, FilesPage)  # read without a floor: entries
            for entry in batch:
                entries.setdefault(entry.name, entry)
            return None

        complete, total = await self._stream(path, 0, keyword, keep, known=lambda name: name in entries)
        listing = DirListing(path=path, entries=entries, complete=complete, total=max(total, len(entries)))
        if keyword is None:
            self._cache(listing)
        return listing

    async def _stream(
        self,
        path: str,
        start: int,
        keyword: str | None,
        on_batch: Batch,
        *,
        gate: _Gate | None = None,
        parallel: bool = True,
        names: tuple[str, ...] = (),
        after: str | None = None,
        known: Callable[[str], bool] | None = None,
        floor: FloorOf | None = None,
    ) -> tuple[bool, int]:
        """Read `path` from page offset `start` to its end, a page at a time, handing each page to `on_batch`.

        Returns (read whole, total). Raises _Stop(offset, first names, last name handed) when the gate stopped
        it part way: the pages before the offset were handed over, none after. `names`: the first names of the
        folder's first page, when resuming at `start` > 0; `after`: the last name handed before `start`.

        A resumed folder is read on after `after`, not at `start`: a file added or removed before it meanwhile
        (a job writing its logs) moves every later entry, and an offset alone would hand an entry again or
        skip one. The page is asked from a little before `start` and begins after that name; a folder where
        the name is not found there (changed more than that) is marked incomplete, nothing of it handed twice.
        """
        if start and after is None:
            # Where a reading stopped is known by the name read last; an offset alone could hand an entry again.
            log.info("%s was read in part and where is not known: not read on", path)
            return False, start
        resumed = bool(start)
        back = start
        if resumed:
            room = gate.room() if gate is not None else RESUME_OVERLAP
            back = max(0, start - max(1, min(RESUME_OVERLAP, room // 4, self._page // 4)))
        try:
            # A resumed folder's first page as entries (its names are looked at), never summed as a FilesPage.
            first, total, children, asked = await self._first_page(
                path, back, keyword, gate, None if resumed else floor
            )
            if resumed and back < start - 1 and back + len(first) < start and _position(first, after) is None:
                # A server that caps pages below the look-back: the page did not reach the name. Once more, from it.
                back = start - 1
                first, total, children, asked = await self._first_page(path, back, keyword, gate)
        except _Stop:
            raise _Stop(start, names, after) from None
        #: The names `children` gives (the folder's sub-folders, as the server sees them) and those of them a page
        #: listed, whatever it listed them as: a link a server counts among the children stays a link.
        child_names = {child.rstrip("/").rpartition("/")[2] for child in children}
        listed_children: set[str] = set()
        head = head_of(first)
        complete = True
        read = start
        #: The last name handed before an offset: where a later call resumes (see above).
        ends: dict[int, str] = {} if after is None else {start: after}

        def stop(at: int) -> _Stop:
            return _Stop(at, names, ends.get(at))

        def hand(batch: list[Entry] | FilesPage, at: int) -> None:
            if child_names and not isinstance(batch, FilesPage):  # a page of files has no folder
                listed_children.update([entry.name for entry in batch if entry.name in child_names])
            taken = on_batch(batch)
            if taken is not None and taken < len(batch):
                assert not isinstance(batch, FilesPage)  # taken whole
                if taken:
                    ends[at + taken] = batch[taken - 1].name
                raise stop(at + taken)  # the caller has what it wanted: the rest is the next call's
            last = tail_of(batch)
            if last is not None:
                ends[at + len(batch)] = last

        if back and names and head == names:
            log.info("the server ignores `start` when listing %s: read %d of %d entries", path, start, total)
            self._start_ignored = True
            complete = False
        elif resumed and (at := _position(first, after)) is None:
            log.info("%s changed before where its reading stopped (%r moved or is gone): not read on", path, after)
            complete = False
        else:
            # Not trusted yet, resumed or not: the second page is checked against this one (a server ignoring
            # `start` answers a resumed folder's page with its first page, whose first names may have changed since).
            verified = False
            names = names if back else head
            if resumed:
                assert at is not None and not isinstance(first, FilesPage)
                if at + 1 == len(first) == asked < self._page and gate is not None:
                    # The budget left covered the overlap only: asked again now, it would again. The next call's.
                    gate.stats.stopped = gate.stats.stopped or "entry_budget"
                    raise _Stop(start, names, after)
                ends[back + at + 1] = first[at].name  # where it is now
                hand(first[at + 1 :], back + at + 1)  # what follows the last name read
            else:
                hand(first, back)
            read = back + len(first)
            step = len(first)
            if resumed and at is not None and back + at + 1 > start and read >= total:
                # Further on than where the reading stopped (files created before it, or a server answering from
                # its first page): not taken as the end before one more page confirms it.
                total = read + 1
            if step and read < total:
                # A page shorter than asked with more to come: the server caps pages; go on in its steps.
                if asked < self._page and step == asked:
                    raise stop(read)  # the budget cut this page: the rest is the next call's
                if parallel and step == asked and self._huge > step:
                    # A large folder: the rest in the largest pages the server takes. A server may read a folder
                    # whole for every page it answers, so fewer, larger pages cost it (and the walk) least.
                    step = self._huge
                if (
                    not verified
                    and parallel
                    and step > asked
                    and not self._start_ignored
                    and (gate is None or gate.room() >= total - read + (total - read) // step + 1)
                ):
                    # The rest at once, HUGE_IN_FLIGHT pages out, the second page checked before any later one
                    # is counted: a round trip less than asking the second page alone, for at most
                    # HUGE_IN_FLIGHT - 1 pages asked in vain of a server that ignores `start` (then remembered).
                    try:
                        read, outcome, total = await self._parallel_pages(
                            path, read, step, total, keyword, hand, gate, ends, stop, head=head, floor=floor
                        )
                        verified = True
                    except _Refused as refused:
                        log.info("the server refused a page of %d entries (%s); using %d", step, refused, len(first))
                        self._huge = step = len(first)
                    else:
                        if outcome == "repeated":
                            log.info(
                                "the server ignores `start` when listing %s: read %d of %d entries", path, read, total
                            )
                        complete = not outcome
                if not verified:
                    # The second page alone first: a server that ignores `start` answers it with the first again.
                    try:
                        second, now, raw, asked = await self._later_page(path, read, step, keyword, gate, floor)
                    except _Stop:
                        raise stop(read) from None
                    except ApiError as exc:
                        if exc.code != "10004" or step <= self._page:
                            raise
                        log.info("the server refused a page of %d entries (%s); using %d", step, exc, len(first))
                        self._huge = step = len(first)
                        try:
                            second, now, raw, asked = await self._later_page(path, read, step, keyword, gate, floor)
                        except _Stop:
                            raise stop(read) from None
                    if raw and (read == 1 or head_of(second) != head):
                        complete, read, total = self._hand_later(
                            path, second, raw, read, asked, step, total, now, hand, ends, stop, gate
                        )
                    else:
                        log.info("the server ignores `start` when listing %s: read %d of %d entries", path, read, total)
                        self._start_ignored = True
                        complete = False
                while complete and read < total:
                    if parallel:
                        read, outcome, total = await self._parallel_pages(
                            path, read, step, total, keyword, hand, gate, ends, stop, floor=floor
                        )
                        complete = not outcome
                        continue
                    try:
                        page, now, raw, asked = await self._later_page(path, read, step, keyword, gate, floor)
                    except _Stop:
                        raise stop(read) from None
                    complete, read, total = self._hand_later(
                        path, page, raw, read, asked, step, total, now, hand, ends, stop, gate
                    )
        if read < total:
            complete = False
        if not complete and not start:
            missing = await self._children_left_out(path, children, listed_children, known, gate)
            if missing:
                hand(missing, read)
        return complete, total

    async def _children_left_out(
        self,
        path: str,
        children: list[str],
        listed: set[str],
        known: Callable[[str], bool] | None,
        gate: _Gate | None,
    ) -> list[Entry]:
        """Sub-folders a cut reading left out that `children` still names: walkable, if not sized. Each is looked up
        by its name first and kept only if a page lists it as a folder: a server may count a link to a folder among
        its children, and a link taken for a folder would be walked (and removed) through. At most
        CHILDREN_LOOKED_UP of them, each look-up within the walk's budget."""
        found: list[Entry] = []
        looked = 0
        for child in children:
            name = child.rstrip("/").rpartition("/")[2]
            if (
                not name
                or name in listed
                or (known is not None and known(name))
                or child.rstrip("/") != join(path, name)
            ):
                continue
            if looked >= CHILDREN_LOOKED_UP or (gate is not None and len(found) >= gate.room()):
                break  # (each one found is an entry of the walk's budget)
            looked += 1
            granted = DOCUMENTED_PAGE
            if gate is not None:
                granted = gate.grant(DOCUMENTED_PAGE)
                if not granted:
                    break
            try:
                async with self._limit.limiter:
                    self.requests += 1
                    answer = await self._api.list_dir(
                        path,
                        keyword=name,
                        start=0,
                        limit=granted,
                        order_by="name",
                        order="asc",
                        on_retry=self._limit.pressure,
                    )
            except EfileMcpError as exc:
                log.info("the sub-folder %s of %s could not be looked up: %s", name, path, exc)
                continue
            finally:
                if gate is not None:
                    gate.settle(granted)
            if gate is not None:
                gate.stats.entries_seen += len(answer.file_list)  # read, so counted against the budget
            # The entry of that name *in this folder* (its path says so: a search may also list deeper ones).
            wanted = join(path, name)
            here = [item for item in answer.file_list if item.name == name and (item.path or "").rstrip("/") == wanted]
            if len(here) == 1 and here[0].kind == "directory":
                found.append(Entry(name, "directory", 0, None))
        return found

    async def _later_page(
        self, path: str, read: int, step: int, keyword: str | None, gate: _Gate | None, floor: FloorOf | None
    ) -> tuple[list[Entry] | FilesPage, int, int, int]:
        """The page after `read`, asked from one entry before it (the name handed last; see `_after_edge`), `step`
        entries in all (a server capping its pages at `step` still answers it whole). Returns (the page, the
        folder's total now, entries answered, the limit asked)."""
        page, total, _, asked = await self._page_of(path, read - 1, max(step, 2), keyword, gate, floor=floor, lead=True)
        return page, total, raw_length(page), asked

    def _hand_later(
        self,
        path: str,
        page: list[Entry] | FilesPage,
        raw: int,
        read: int,
        asked: int,
        step: int,
        total: int,
        now: int,
        hand: Callable[[list[Entry] | FilesPage, int], None],
        ends: dict[int, str],
        stop: Callable[[int], _Stop],
        gate: _Gate | None,
    ) -> tuple[bool, int, int]:
        """Hand what a later page holds after the name handed last (`total`: the folder's count before this page,
        `now`: the count this page gives). Returns (the reading still whole, where it got to, the total to read
        to); raises _Stop when the budget cut the page."""
        if asked <= 1 and gate is not None:
            # Granted the overlap alone: asked again now, it would be again. What is left is the next call's.
            gate.stats.stopped = gate.stats.stopped or "entry_budget"
            raise stop(read)
        placed_to = _hand_placed(path, page, raw, asked, read, total, now, hand, ends)
        if placed_to is None:
            return False, read, total
        read = placed_to
        if asked < max(step, 2) and raw == asked:
            raise stop(read)  # the budget cut this page: the rest is the next call's
        if raw < asked:  # the folder ends here
            return read >= now, read, read
        return True, read, now

    async def _parallel_pages(
        self,
        path: str,
        read: int,
        step: int,
        total: int,
        keyword: str | None,
        hand: Callable[[list[Entry] | FilesPage, int], None],
        gate: _Gate | None,
        ends: dict[int, str],
        stop: Callable[[int], _Stop],
        *,
        head: tuple[str, ...] | None = None,
        floor: FloorOf | None = None,
    ) -> tuple[int, str, int]:
        """The rest of a large folder, pages in parallel, handed in order. They pass the limiter (and the gate) in
        order, so a stop leaves a prefix read. Returns (where reading got to, why it is not whole: "" when it is,
        "repeated" (the server repeated the first page), "changed" (a page that does not follow the one before),
        the total to read to); raises _Stop(offset, names, the last name before it) when stopped.

        Each page is asked from one entry before its offset and must begin with the name handed last
        (`_after_edge`): pages answered at different moments of a folder that changes meanwhile never hand an
        entry twice nor leave one out unsaid. A page that arrives before the one before it waits (reserved).

        `head`: the first names of the folder's first page, when `start` is not known to be honoured yet: the
        page at `read` must not begin with them, and later pages wait until it is known. A repeat reads nothing
        more; a refusal of the page size (10004) of that page raises _Refused, nothing counted.
        """
        step = max(step, 2)
        starts = list(range(read, total, step - 1))
        arrived: dict[int, tuple[list[Entry] | FilesPage, int]] = {}
        stopped_at: list[int] = []
        state: dict[str, Any] = {"verified": head is None, "outcome": "", "next": read, "total": total, "ended": False}
        # Beyond the first wave, pages wait for the check: a server ignoring `start` costs one wave at most.
        checked = anyio.Event()
        first_wave_end = read + int(self._huge_pages.total_tokens) * (step - 1)

        def release(page: list[Entry] | FilesPage) -> None:
            if gate is not None:
                gate.reserved -= len(page)

        def drain(scope: anyio.CancelScope) -> None:
            """Hand the pages that follow what was handed, in order (no await: nothing changes meanwhile)."""
            while state["verified"] and not state["outcome"] and not state["ended"] and state["next"] in arrived:
                at = state["next"]
                page, page_total = arrived.pop(at)
                release(page)
                raw = raw_length(page)
                placed_to = _hand_placed(path, page, raw, step, at, state["total"], page_total, hand, ends)
                if placed_to is None:
                    state["outcome"] = "changed"
                    scope.cancel()
                    return
                state["next"] = placed_to
                state["total"] = page_total
                if raw < step:  # the folder ends here
                    state["ended"] = True
                    scope.cancel()

        async def one(offset: int, scope: anyio.CancelScope) -> None:
            if not state["verified"] and offset >= first_wave_end:
                await checked.wait()
                if not state["verified"]:
                    return  # repeated, or the check itself was stopped
            try:
                # Whole pages only: a page cut here would leave a gap before the pages after it.
                page, page_total, _, _ = await self._page_of(
                    path, offset - 1, step, keyword, gate, whole=True, floor=floor, lead=True
                )
            except _Stop:
                stopped_at.append(offset)
                if offset == read:
                    checked.set()  # unchecked, the pages after it cannot be counted: none is asked
                return
            except ApiError as exc:
                if state["verified"] or exc.code != "10004":
                    raise
                scope.cancel()  # the page size is refused: every page of it is
                raise _Refused(str(exc)) from None
            if state["outcome"] or state["ended"]:
                return
            if not state["verified"] and offset == read:
                if not raw_length(page) or (read > 1 and head_of(page) == head):
                    state["outcome"] = "repeated"
                    self._start_ignored = True
                    checked.set()
                    scope.cancel()  # the later pages would repeat it too
                    return
                state["verified"] = True
                checked.set()
            arrived[offset] = (page, page_total)
            if gate is not None:
                gate.reserved += len(page)  # still reserved until it is handed: never granted twice
            drain(scope)

        try:
            async with task_group() as tg:
                for offset in starts:
                    tg.start_soon(one, offset, tg.cancel_scope)
        except _Refused:
            if state["next"] != read:
                raise ApiError("10004", "the server refused a page size it had accepted") from None
            raise
        finally:
            for page, _ in arrived.values():  # pages that never got their turn (stopped, failed): not counted
                release(page)
            arrived.clear()
        if state["outcome"]:
            return state["next"], state["outcome"], state["total"]
        if state["ended"]:
            ended_at = state["next"]
            return ended_at, "" if ended_at >= state["total"] else "changed", ended_at
        if stopped_at:  # the pages before it were granted, answered and handed (in order): read on from there
            raise stop(state["next"])
        return state["next"], "", state["total"]

    async def entry(self, path: str) -> Entry | None:
        """The entry at `path` from its parent's listing; None when it (or its parent) does not exist."""
        parent, _, name = path.rpartition("/")
        parent = parent or "/"
        cached = self._dirs.get(parent)
        if cached is not None:
            found = cached.entries.get(name)
            if found is not None or (cached.complete and cached.total <= self._page):
                return found
            # A reading of several pages (or not whole) is no proof of absence: removals under way and files
            # added meanwhile shift a folder's pages, hiding names that are there. The name is looked up itself.
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
            by_parent.setdefault(parent_of(path), []).append(path)
        found: dict[str, Entry | EfileMcpError | None] = {}

        async def look(parent: str, wanted: list[str]) -> None:
            try:
                if len(wanted) > 1 and parent not in self._dirs:
                    try:
                        await self.read_dir(parent)
                    except NotFoundError:
                        found.update(dict.fromkeys(wanted, None))
                        return
                rest = []
                for path in wanted:
                    listing = self._dirs.get(parent)
                    entry = listing.entries.get(path.rpartition("/")[2]) if listing is not None else None
                    if entry is not None:
                        found[path] = entry
                    else:
                        rest.append(path)

                async def one(path: str) -> None:
                    found[path] = await self.entry(path)

                async with task_group() as names:  # looked up on their own: together, within the limiter
                    for path in rest:
                        names.start_soon(one, path)
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
        walk: TreeWalk | str,
        on_entries: OnEntries | None = None,
        *,
        limits: WalkLimits,
        on_closed: OnClosed | None = None,
        progress: Progress | None = None,
        stop: Callable[[], bool] | None = None,
        sequential: bool = False,
        summary: Summary | None = None,
    ) -> WalkStats:
        """Read on along `walk` (or a new walk of a root folder) until it is done or must stop.

        Before each request: past `limits.max_entries` entries read in this call (requests in flight count
        what they asked for), past the deadline, or when `stop()` says so, no new request goes out; the folders
        not read stay in `walk.frontier` (a large folder with the offset it got to) and `stats.stopped` says
        why. Links are entries, never followed. A folder that cannot be read is recorded, not fatal (an auth
        failure is: nothing can be read). Returns the walk's stats (cumulative over resumed calls; `requests`
        counts this call's). `sequential`: a folder's pages one after another, so that `on_entries` may take
        part of a page (the rest is read again by the next call, from that offset). `summary`: pages of regular
        files go to its `on_files` as `FilesPage`s (read against its floor, no entry made for most files)
        instead of to `on_entries`, when the walk keeps no fingerprint and the folder is not cached.
        """
        if isinstance(walk, str):
            walk = TreeWalk(walk, aggregate=on_closed is not None)
        stats = walk.stats
        stats.stopped = ""
        gate = _Gate(limits, stats, stop, self._limit.maximum)
        last_progress = -math.inf
        requests_before = self.requests
        # Folders read at once: twice the requests allowed at once, so that a folder is waiting for the slot an
        # answer frees and its request leaves while that answer is read (requests stay bounded by the limiter).
        workers = 2 * self._limit.maximum
        running = 0
        wake = anyio.Event()
        # Pages of files summed, not an entry each: not when every entry is hashed into a fingerprint.
        fast_files = summary is not None and not walk.fingerprint and not sequential

        def batch_of(folder: str, depth: int, whole: dict[str, Entry] | None) -> Batch:
            def take(batch: list[Entry] | FilesPage) -> int | None:
                if isinstance(batch, FilesPage):  # read against `summary`'s floor: it takes the page whole
                    assert summary is not None
                    summary.on_files(folder, depth, batch)
                    stats.entries_seen += len(batch)
                    walk._add_files(folder, batch)
                    return None
                taken = on_entries(folder, depth, batch) if on_entries is not None else None
                kept = batch if taken is None else batch[:taken]
                stats.entries_seen += len(kept)
                walk._add_entries(folder, depth, kept)
                if whole is not None:
                    if self._cached_entries + len(whole) + len(kept) > CACHE_MAX_ENTRIES:
                        whole.clear()
                        held[folder] = False
                    elif held[folder]:
                        whole.update((entry.name, entry) for entry in kept)
                return taken

            return take

        #: Folders whose listing is being kept for the call's look-ups (a dry run looks its matches up again).
        held: dict[str, bool] = {}

        async def read(pending: Pending) -> None:
            nonlocal running, last_progress
            folder, depth, start, names, after = pending
            whole: dict[str, Entry] | None = None
            known = self._dirs.get(folder) if not start else None
            if known is not None and not known.complete:
                known = None
            if self._keep and not start and known is None and self._cached_entries < CACHE_MAX_ENTRIES:
                whole, held[folder] = {}, True
            try:
                walk._begin(folder, depth)
                try:
                    if known is not None:
                        # Read whole earlier in this call (a look-up, the re-check's walk): not asked again.
                        batch = list(known.entries.values())
                        taken = batch_of(folder, depth, None)(batch)
                        if taken is not None and taken < len(batch):
                            head = tuple(entry.name for entry in batch[:3])
                            raise _Stop(taken, head, batch[taken - 1].name if taken else None)
                        complete, total = True, len(batch)
                    else:
                        complete, total = await self._stream(
                            folder,
                            start,
                            None,
                            batch_of(folder, depth, whole),
                            gate=gate,
                            names=names,
                            after=after,
                            parallel=not sequential,
                            floor=(
                                functools.partial(summary.floor, depth)
                                if summary is not None and fast_files and whole is None
                                else None
                            ),
                        )
                except _Stop as stopped:
                    offset, *rest = stopped.args
                    if rest:
                        names = tuple(rest[0])
                        after = rest[1] if len(rest) > 1 else None
                    if int(offset) and after is None:  # where it stopped is not known by a name: not read on
                        stats.dirs_listed += 1
                        stats.incomplete_dirs += 1
                        walk._end(folder, complete=False, on_closed=on_closed)
                        return
                    walk.frontier.append((folder, depth, int(offset), names, after))
                    return
                except AuthError:
                    raise
                except EfileMcpError as exc:
                    if len(stats.unreadable) < UNREADABLE_KEPT:
                        stats.unreadable.append(Unreadable(folder, str(exc)))
                    else:
                        stats.unreadable_more += 1
                    walk._end(folder, complete=False, on_closed=on_closed)
                    return
                stats.dirs_listed += 1
                if not complete:
                    stats.incomplete_dirs += 1
                if whole is not None and held.pop(folder, False):
                    self._cache(DirListing(folder, whole, complete, max(total, len(whole))))
                walk._end(folder, complete=complete, on_closed=on_closed)
                if progress is not None and anyio.current_time() - last_progress >= 0.5:
                    last_progress = anyio.current_time()
                    await progress(stats.entries_seen, stats.dirs_listed)
            finally:
                running -= 1
                wake.set()

        try:
            async with task_group() as tg:
                while True:
                    # Not while requests in flight hold what is left of the budget (room 0): a folder started now
                    # would be granted nothing and put back, again and again, starving the answers it waits for.
                    if walk.frontier and running < workers and gate.room() > 0:
                        running += 1
                        tg.start_soon(read, walk.frontier.pop())
                        continue
                    if running == 0:
                        break
                    await wake.wait()
                    wake = anyio.Event()
        finally:
            stats.requests = self.requests - requests_before
        if not walk.frontier:
            stats.stopped = ""
        elif not stats.stopped:
            stats.stopped = "entry_budget"  # what is left needs more than the budget had left
        return stats
