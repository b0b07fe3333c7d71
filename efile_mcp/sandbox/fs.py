"""Virtual path <-> real path mapping and deletion for the sandbox.

The sandbox deletes real files, so everything here is written to never touch anything outside
`root`: virtual paths are mapped component by component, "." / ".." / NUL are refused rather than
normalised, parents are resolved and compared against the real root, and the last component is
acted on itself (a symlink is unlinked, never followed).
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import shutil
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from efile_mcp.models.wire import FileEntry

# The API reports server local time; SCNet runs on Asia/Shanghai, which has no DST, so a fixed
# offset is exact and needs no tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def format_time(epoch: float | None = None) -> str:
    moment = datetime.now(SHANGHAI) if epoch is None else datetime.fromtimestamp(epoch, SHANGHAI)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class ApiError(Exception):
    """An error the sandbox answers as an envelope `{"code": code, "msg": msg, "data": null}`."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class PathMapper:
    """Maps the virtual home `/public/home/<user>` onto a local directory."""

    def __init__(self, root: Path, home: str) -> None:
        self.root = Path(os.path.realpath(root))
        self.home = home
        self._home_parts = [part for part in home.split("/") if part]

    def normalise(self, virtual: str) -> str:
        """The canonical spelling of a valid virtual path (no duplicate or trailing slashes)."""
        return "/" + "/".join(self._parts(virtual))

    def _parts(self, virtual: object) -> list[str]:
        if not isinstance(virtual, str) or not virtual:
            raise ApiError("10004", "path must be a non-empty string")
        if "\x00" in virtual:
            raise ApiError("911029", f"path contains special characters: {virtual!r}")
        if not virtual.startswith("/"):
            raise ApiError("10004", f"path is not absolute: {virtual}")
        parts = [part for part in virtual.split("/") if part]
        # Refused, not normalised: a client sending ".." is either buggy or probing.
        if any(part in (".", "..") for part in parts):
            raise ApiError("911030", f"permission denied: {virtual}")
        return parts

    def to_real(self, virtual: str) -> Path:
        parts = self._parts(virtual)
        if parts[: len(self._home_parts)] != self._home_parts:
            raise ApiError("911030", f"permission denied: {virtual} is outside {self.home}")
        rest = parts[len(self._home_parts) :]
        if not rest:
            return self.root
        # A symlinked parent directory could lead anywhere; resolve the parents and check them
        # against the real root. The last component is left unresolved on purpose.
        parent = os.path.realpath(self.root.joinpath(*rest[:-1]))
        if not _inside(parent, str(self.root)):
            raise ApiError("911030", f"permission denied: {virtual} resolves outside {self.home}")
        return Path(parent) / rest[-1]

    def to_virtual(self, real: Path) -> str:
        relative = Path(real).relative_to(self.root)
        return self.home if relative == Path(".") else f"{self.home}/{relative.as_posix()}"


def count_tree(path: Path) -> tuple[int, int]:
    """(entries, bytes) below and including `path`, without following symlinks.

    Bytes count non-directory entries only: a directory's own lstat size says nothing about what
    deleting it frees. Unreadable directories are counted as themselves; deleting them then fails
    per task, which is where the API reports such errors.
    """
    top = os.lstat(path)
    if not stat.S_ISDIR(top.st_mode):
        return 1, top.st_size
    entries, size = 1, 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as iterator:
                for entry in iterator:
                    entries += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        size += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return entries, size


def delete_now(path: Path) -> None:
    """Delete `path` in one go: a directory with rmtree (which never follows symlinks), anything else unlinked."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def iter_delete(path: Path) -> Iterator[int]:
    """Delete `path` entry by entry, children first, yielding the bytes freed by each entry.

    Lets the background worker report progress and stop between entries when a task is cancelled.
    """
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode):
        # Materialise the listing so no directory handle stays open across a yield.
        with os.scandir(path) as iterator:
            children = [Path(entry.path) for entry in iterator]
        for child in children:
            yield from iter_delete(child)
        os.rmdir(path)
        yield 0
    else:
        os.unlink(path)
        yield info.st_size


def pull(entries: Iterator[int], limit: int) -> tuple[list[int], bool]:
    """Advance a deletion by at most `limit` entries; returns (bytes per entry, finished)."""
    sizes: list[int] = []
    for size in entries:
        sizes.append(size)
        if len(sizes) >= limit:
            return sizes, False
    return sizes, True


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


def describe(virtual: str, name: str, info: os.stat_result) -> FileEntry:
    """One file/list entry from an lstat result."""
    mode = info.st_mode
    is_dir, is_link, is_file = stat.S_ISDIR(mode), stat.S_ISLNK(mode), stat.S_ISREG(mode)
    return FileEntry(
        name=name,
        path=virtual,
        type="symlink" if is_link else "directory" if is_dir else "file",
        size=info.st_size,
        isDirectory=is_dir,
        isRegularFile=is_file,
        isSymbolicLink=is_link,
        owner=_owner(info.st_uid),
        group=_group(info.st_gid),
        permission=stat.filemode(mode)[1:],
        lastModifiedTime=format_time(info.st_mtime),
        creationTime=format_time(getattr(info, "st_birthtime", info.st_ctime)),
        lastAccessTime=format_time(info.st_atime),
    )


def list_directory(real: Path, virtual: str) -> list[tuple[FileEntry, os.stat_result]]:
    """Entries of a directory (lstat, symlinks not followed); 911020 if missing, 911022 if not a directory."""
    try:
        info = os.lstat(real)
    except (FileNotFoundError, NotADirectoryError):
        raise ApiError("911020", f"file or directory does not exist: {virtual}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ApiError("911022", f"target is not a folder: {virtual}")
    base = virtual.rstrip("/")
    result = []
    try:
        with os.scandir(real) as iterator:
            for entry in iterator:
                try:
                    entry_info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                result.append((describe(f"{base}/{entry.name}", entry.name, entry_info), entry_info))
    except PermissionError:
        raise ApiError("911030", f"permission denied: {virtual}") from None
    return result
