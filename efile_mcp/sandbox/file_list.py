"""file/list of the sandbox: one folder's entries, filtered, ordered and paged, plus its sub-folders.

Built for large folders: the folder is read once (names and entry kinds come from the directory
itself), only the entries of the page are stat'ed unless the order needs every entry's size or
time, and answers are plain dicts in the shape of `FileEntry` rather than one model per entry.

A folder's sorted names are kept between requests (`FolderNames`) while the folder is unchanged, so the
pages of a large folder do not each read and sort all of it again (200,000 names: ~0.15 s a page). Any
entry created, removed or renamed in it changes its mtime and ctime, which key the kept names; a folder
changed less than a second before it was read is not kept, since a change within the same timestamp tick
would leave both times as they were. Entries' sizes and times are always stat'ed afresh.
"""

from __future__ import annotations

import functools
import grp
import math
import os
import pwd
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from efile_mcp.sandbox.envelope import ApiError
from efile_mcp.sandbox.fs import PathMapper

# The API reports server local time; SCNet runs on Asia/Shanghai, which has no DST, so a fixed
# offset is exact and needs no tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def format_time(epoch: float | None = None) -> str:
    if epoch is None:
        return datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    return _format_second(math.floor(epoch))


@functools.lru_cache(maxsize=8192)
def _format_second(second: int) -> str:
    # Files of one folder tend to share a few seconds: formatting each second once saves most of the work.
    return datetime.fromtimestamp(second, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


@functools.lru_cache(maxsize=256)
def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@functools.lru_cache(maxsize=256)
def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@functools.lru_cache(maxsize=1024)
def _mode_fields(mode: int) -> tuple[str, bool, bool, bool, str]:
    """(type, isDirectory, isRegularFile, isSymbolicLink, permission) of an st_mode: few distinct ones per folder."""
    is_dir, is_link, is_file = stat.S_ISDIR(mode), stat.S_ISLNK(mode), stat.S_ISREG(mode)
    kind = "symlink" if is_link else "directory" if is_dir else "file"
    return kind, is_dir, is_file, is_link, stat.filemode(mode)[1:]


def describe(path: str, name: str, info: os.stat_result) -> dict[str, Any]:
    """One `fileList` entry from an lstat result, keyed and ordered as `FileEntry` dumps by alias."""
    kind, is_dir, is_file, is_link, permission = _mode_fields(info.st_mode)
    return {
        "name": name,
        "path": path,
        "type": kind,
        "size": info.st_size,
        "isDirectory": is_dir,
        "isRegularFile": is_file,
        "isSymbolicLink": is_link,
        "owner": _owner(info.st_uid),
        "group": _group(info.st_gid),
        "permission": permission,
        "lastModifiedTime": format_time(info.st_mtime),
        "creationTime": format_time(getattr(info, "st_birthtime", info.st_ctime)),
        "lastAccessTime": format_time(info.st_atime),
    }


@dataclass(frozen=True)
class ListingQuery:
    path: str
    start: int
    limit: int
    order: str
    order_by: str
    keyword: str


@dataclass(frozen=True)
class ListingRules:
    """The SandboxConfig flags file/list obeys."""

    max_limit: int
    page_cap: int | None
    ignores_start: bool
    children: bool


def parse_query(params: Any, home: str, rules: ListingRules) -> ListingQuery:
    if "start" not in params or "limit" not in params:
        raise ApiError("10003", "start and limit are required")
    try:
        start, limit = int(params["start"]), int(params["limit"])
    except ValueError:
        raise ApiError("10004", "start and limit must be integers") from None
    if start < 0 or limit < 1 or limit > rules.max_limit:
        raise ApiError("10004", f"need start >= 0 and 1 <= limit <= {rules.max_limit}")
    order = params.get("order") or "asc"
    order_by = params.get("orderBy") or "name"
    if order not in ("asc", "desc") or order_by not in ("name", "size", "lastModifiedTime"):
        raise ApiError("10004", "order must be asc|desc and orderBy name|size|lastModifiedTime")
    return ListingQuery(
        params.get("path") or home, start, limit, order, order_by, (params.get("keyWord") or "").casefold()
    )


def _first(pair: tuple[str, os.stat_result]) -> str:
    return pair[0]


@dataclass(frozen=True, slots=True)
class FolderNames:
    """A folder's entries as its directory lists them, sorted by name: all of them, and its sub-folders."""

    #: (mtime, ctime) of the folder, in ns, taken before it was read.
    stamp: tuple[int, int]
    names: list[str]
    folders: list[str]


#: Folders whose names are kept, most recently used last; at most this many names in all.
KEPT_NAMES = 1_000_000
#: A folder changed less than this before it was read is not kept (ns): see the module's docstring.
SETTLED_NS = 1_000_000_000
_kept: OrderedDict[tuple[int, int], FolderNames] = OrderedDict()
_kept_lock = threading.Lock()
#: One reader per folder at a time (a lock per hash bucket): the pages of a large folder asked together
#: wait for one reading instead of each reading it.
_reading = [threading.Lock() for _ in range(64)]
#: The clock the settling is judged by (tests move it).
now_ns = time.time_ns


def folder_names(dir_fd: int) -> FolderNames:
    """The names in the open folder `dir_fd`, sorted; kept between requests while the folder is unchanged."""
    info = os.fstat(dir_fd)
    key, stamp = (info.st_dev, info.st_ino), (info.st_mtime_ns, info.st_ctime_ns)
    with _reading[hash(key) % len(_reading)]:
        with _kept_lock:
            kept = _kept.get(key)
            if kept is not None and kept.stamp == stamp:
                _kept.move_to_end(key)
                return kept
        read_at = now_ns()
        names: list[str] = []
        folders: list[str] = []
        with os.scandir(dir_fd) as iterator:
            for entry in iterator:
                names.append(entry.name)
                if entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
        names.sort()
        folders.sort()
        listing = FolderNames(stamp, names, folders)
        if read_at - max(stamp) >= SETTLED_NS and len(names) <= KEPT_NAMES:
            with _kept_lock:
                _kept[key] = listing
                _kept.move_to_end(key)
                while sum(len(held.names) for held in _kept.values()) > KEPT_NAMES:
                    _kept.popitem(last=False)
        return listing


def list_folder(fs: PathMapper, query: ListingQuery, rules: ListingRules) -> dict[str, Any]:
    """`data` of file/list. Blocking: run it in a worker thread."""
    virtual = fs.normalise(query.path)
    dir_fd = fs.open_directory(query.path)
    try:
        try:
            listing = folder_names(dir_fd)
        except PermissionError:
            raise ApiError("911030", f"permission denied: {virtual}") from None
        base = virtual.rstrip("/")
        children = (
            [{"id": f"{base}/{name}", "label": name, "path": f"{base}/{name}"} for name in listing.folders]
            if rules.children
            else None
        )
        names = listing.names
        if query.keyword:
            names = [name for name in names if query.keyword in name.casefold()]
        start = 0 if rules.ignores_start else query.start
        limit = query.limit if rules.page_cap is None else min(query.limit, rules.page_cap)
        if query.order_by == "name":
            # Only the page needs a stat: the rest is counted and sorted from the folder itself.
            total = len(names)
            if query.order == "desc":
                chosen = names[max(0, total - start - limit) : max(0, total - start)][::-1]
            else:
                chosen = names[start : start + limit]
            page = []
            for name in chosen:
                try:
                    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:  # deleted since the folder was read
                    continue
                page.append(describe(f"{base}/{name}", name, info))
        else:
            stated = []
            for name in names:
                try:
                    stated.append((name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)))
                except FileNotFoundError:
                    continue
            # Name breaks ties so paging is stable across calls.
            stated.sort(key=_first)
            if query.order_by == "size":
                stated.sort(key=lambda pair: pair[1].st_size)
            else:
                stated.sort(key=lambda pair: pair[1].st_mtime)
            if query.order == "desc":
                stated.reverse()
            total = len(stated)
            page = [describe(f"{base}/{name}", name, info) for name, info in stated[start : start + limit]]
    finally:
        os.close(dir_fd)
    data: dict[str, Any] = {"total": total, "path": virtual, "fileList": page}
    if children is not None:
        data["children"] = children
    return data
