"""file/list of the sandbox: one folder's entries, filtered, ordered and paged, plus its sub-folders.

Built for large folders: the folder is read once (names and entry kinds come from the directory
itself), only the entries of the page are stat'ed unless the order needs every entry's size or
time, and answers are plain dicts in the shape of `FileEntry` rather than one model per entry.
"""

from __future__ import annotations

import functools
import grp
import math
import os
import pwd
import stat
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


def describe(path: str, name: str, info: os.stat_result) -> dict[str, Any]:
    """One `fileList` entry from an lstat result, keyed and ordered as `FileEntry` dumps by alias."""
    mode = info.st_mode
    is_dir, is_link, is_file = stat.S_ISDIR(mode), stat.S_ISLNK(mode), stat.S_ISREG(mode)
    return {
        "name": name,
        "path": path,
        "type": "symlink" if is_link else "directory" if is_dir else "file",
        "size": info.st_size,
        "isDirectory": is_dir,
        "isRegularFile": is_file,
        "isSymbolicLink": is_link,
        "owner": _owner(info.st_uid),
        "group": _group(info.st_gid),
        "permission": stat.filemode(mode)[1:],
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
    return ListingQuery(params.get("path") or home, start, limit, order, order_by, (params.get("keyWord") or "").casefold())


def list_folder(fs: PathMapper, query: ListingQuery, rules: ListingRules) -> dict[str, Any]:
    """`data` of file/list. Blocking: run it in a worker thread."""
    virtual = fs.normalise(query.path)
    dir_fd = fs.open_directory(query.path)
    try:
        try:
            with os.scandir(dir_fd) as iterator:
                entries = [entry for entry in iterator]
        except PermissionError:
            raise ApiError("911030", f"permission denied: {virtual}") from None
        base = virtual.rstrip("/")
        children = (
            sorted(
                ({"id": f"{base}/{e.name}", "label": e.name, "path": f"{base}/{e.name}"} for e in entries if e.is_dir(follow_symlinks=False)),
                key=lambda child: child["label"],
            )
            if rules.children
            else None
        )
        if query.keyword:
            entries = [entry for entry in entries if query.keyword in entry.name.casefold()]
        stats: dict[str, os.stat_result] = {}

        def lstat(entry: os.DirEntry[str]) -> os.stat_result | None:
            if entry.name not in stats:
                try:
                    stats[entry.name] = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # deleted since the folder was read
                    return None
            return stats[entry.name]

        # Name breaks ties so paging is stable across calls.
        if query.order_by == "name":
            entries.sort(key=lambda entry: entry.name, reverse=query.order == "desc")
        else:
            entries = [entry for entry in entries if lstat(entry) is not None]
            entries.sort(key=lambda entry: entry.name)
            if query.order_by == "size":
                entries.sort(key=lambda entry: stats[entry.name].st_size)
            else:
                entries.sort(key=lambda entry: stats[entry.name].st_mtime)
            if query.order == "desc":
                entries.reverse()
        start = 0 if rules.ignores_start else query.start
        limit = query.limit if rules.page_cap is None else min(query.limit, rules.page_cap)
        page = []
        for entry in entries[start : start + limit]:
            info = lstat(entry)
            if info is not None:
                page.append(describe(f"{base}/{entry.name}", entry.name, info))
    finally:
        os.close(dir_fd)
    data: dict[str, Any] = {"total": len(entries), "path": virtual, "fileList": page}
    if children is not None:
        data["children"] = children
    return data
