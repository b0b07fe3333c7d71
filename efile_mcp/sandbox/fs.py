"""Virtual path resolution and file-system work for the sandbox, all relative to directory descriptors.

The sandbox deletes real files, so nothing here ever acts on a path string that the kernel could
resolve through a symbolic link: every component is opened relative to the directory opened before
it with `O_NOFOLLOW`, and every deletion is `unlinkat`/`rmdir` with a `dir_fd`. A folder swapped for a
symlink between a check and an action therefore cannot lead outside DIR.

To stay faithful to the real storage, where a path through a symbolic link resolves like any POSIX
path, a link met on the way is followed by the resolver itself: its target is read, and walked
component by component (an absolute target re-anchored at the root descriptor), with a bounded
number of hops. Any resolution that would leave DIR answers 911030. The last component of a path to
delete is never followed: removing a link removes the link.

"." / ".." / NUL in a client's path are refused rather than normalised.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from efile_mcp.sandbox.envelope import ApiError

__all__ = [
    "ApiError",
    "Located",
    "PathMapper",
    "count_tree",
    "delete_now",
    "iter_delete",
    "pull",
    "regular_file_bytes",
]

#: Open a directory without following a link in its last component.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Links followed while resolving one path; Linux gives up (ELOOP) at 40 too.
MAX_LINK_HOPS = 40


class _NotAFolder(Exception):
    """A component that had to be a folder is something else; `last` when nothing followed it."""

    def __init__(self, last: bool) -> None:
        super().__init__()
        self.last = last


@dataclass
class Located:
    """An entry to act on: its name inside an open parent directory (closed by `close` or `with`)."""

    parent_fd: int
    name: str

    def close(self) -> None:
        os.close(self.parent_fd)

    def __enter__(self) -> Located:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class PathMapper:
    """Maps the virtual home `/public/home/<user>` onto a local directory (DIR) and resolves paths in it."""

    def __init__(self, root: Path, home: str) -> None:
        self.root = Path(os.path.realpath(root))
        self.home = home
        self._home_parts = [part for part in home.split("/") if part]
        self._root_parts = list(self.root.parts[1:])

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

    def relative_parts(self, virtual: str) -> list[str]:
        """The components of `virtual` below the home; 911030 for anything outside it."""
        parts = self._parts(virtual)
        if parts[: len(self._home_parts)] != self._home_parts:
            raise ApiError("911030", f"permission denied: {virtual} is outside {self.home}")
        return parts[len(self._home_parts) :]

    def to_real(self, virtual: str) -> Path:
        """Where `virtual` lies in DIR, spelled out without resolving anything: for display and
        tests only. Never act on it: the kernel would follow links on the way."""
        return self.root.joinpath(*self.relative_parts(virtual))

    def to_virtual(self, real: Path) -> str:
        relative = Path(real).relative_to(self.root)
        return self.home if relative == Path(".") else f"{self.home}/{relative.as_posix()}"

    # -- resolution -------------------------------------------------------------------------------

    def locate(self, virtual: str) -> Located:
        """The entry `virtual` names, to act on itself (its last component is not followed).

        911030 for the home itself or a path leaving DIR, 911020 when a folder on the way is missing.
        """
        names = self.relative_parts(virtual)
        if not names:
            raise ApiError("911030", f"permission denied: cannot act on the home directory {virtual}")
        try:
            parent_fd = self._descend(names[:-1], virtual)
        except _NotAFolder:
            raise ApiError("911020", f"file or directory does not exist: {virtual}") from None
        return Located(parent_fd, names[-1])

    def open_directory(self, virtual: str) -> int:
        """A descriptor of the folder `virtual` names, links inside DIR followed; the caller closes it.

        911020 when missing, 911022 when it is not a folder, 911030 when it resolves outside DIR.
        """
        try:
            return self._descend(self.relative_parts(virtual), virtual)
        except _NotAFolder as error:
            if error.last:
                raise ApiError("911022", f"target is not a folder: {virtual}") from None
            raise ApiError("911020", f"file or directory does not exist: {virtual}") from None

    def _open_root(self) -> int:
        try:
            return os.open(self.root, _DIR_FLAGS)
        except OSError as error:
            raise ApiError(
                "10001", f"internal error: the sandbox directory cannot be opened ({error.strerror})"
            ) from None

    def _descend(self, names: list[str], virtual: str) -> int:
        """Open the folder `names` lead to from the root, one component at a time; the caller closes it."""
        outside = ApiError("911030", f"permission denied: {virtual} resolves outside {self.home}")
        # One descriptor per level, so ".." in a link target steps back without any path lookup.
        stack = [self._open_root()]
        pending = deque(names)
        hops = 0
        try:
            while pending:
                name = pending.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) == 1:
                        raise outside
                    os.close(stack.pop())
                    continue
                try:
                    stack.append(os.open(name, _DIR_FLAGS, dir_fd=stack[-1]))
                    continue
                except OSError as error:
                    target = self._link_target(stack[-1], name, error, virtual, last=not pending)
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise ApiError("911030", f"permission denied: too many levels of symbolic links in {virtual}")
                if target is None:  # replaced by a folder meanwhile: open it again
                    pending.appendleft(name)
                elif target.startswith("/"):
                    rest = target.split("/")[1:]
                    if rest[: len(self._root_parts)] != self._root_parts:
                        raise outside
                    while len(stack) > 1:
                        os.close(stack.pop())
                    pending.extendleft(reversed(rest[len(self._root_parts) :]))
                else:
                    pending.extendleft(reversed(target.split("/")))
            return stack.pop()
        finally:
            for fd in stack:
                os.close(fd)

    @staticmethod
    def _link_target(dir_fd: int, name: str, error: OSError, virtual: str, *, last: bool) -> str | None:
        """Why `name` did not open as a folder: the link's target, None to retry, or an error raised."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise ApiError("911020", f"file or directory does not exist: {virtual}") from None
        if stat.S_ISLNK(info.st_mode):
            try:
                return os.readlink(name, dir_fd=dir_fd)
            except OSError:
                return None  # gone or replaced since the stat
        if stat.S_ISDIR(info.st_mode):
            if isinstance(error, PermissionError):
                raise ApiError("911030", f"permission denied: {virtual}") from None
            if error.errno == errno.ELOOP:
                return None
            raise ApiError("10001", f"internal error: {error.strerror or error}") from None
        raise _NotAFolder(last)


def _open_subdirectory(name: str, dir_fd: int) -> int | None:
    """`name` in `dir_fd` opened as a folder, or None when it is not one (a link is not followed)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.ENOTDIR, errno.ELOOP):
            return None
        raise


def _entries(dir_fd: int) -> list[tuple[str, bool]]:
    """(name, looks like a folder) of every entry; the flag is only a hint, the caller re-checks by opening."""
    # scandir works on its own duplicate of the descriptor and rewinds it: `dir_fd` stays usable.
    with os.scandir(dir_fd) as iterator:
        return [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in iterator]


def count_tree(located: Located) -> tuple[int, int]:
    """(entries, bytes) below and including the located entry, without following symlinks.

    Bytes count non-directory entries only: a directory's own size says nothing about what deleting
    it frees. Unreadable directories are counted as themselves; deleting them then fails per task,
    which is where the API reports such errors. Raises FileNotFoundError when the entry is absent.
    """
    top = os.stat(located.name, dir_fd=located.parent_fd, follow_symlinks=False)
    if not stat.S_ISDIR(top.st_mode):
        return 1, top.st_size
    entries, size = 1, 0
    for dir_fd in _walk_folders(located.parent_fd, located.name):
        try:
            children = _entries(dir_fd)
        except OSError:
            continue
        entries += len(children)
        for name, looks_like_folder in children:
            if not looks_like_folder:
                try:
                    size += os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
                except OSError:
                    continue
    return entries, size


def _walk_folders(parent_fd: int, name: str) -> Iterator[int]:
    """Descriptors of the folder `name` and every folder below it (links not followed), depth first.

    Each descriptor is open only while the caller handles it and its descendants are opened.
    """
    top = _open_subdirectory(name, parent_fd)
    if top is None:
        return
    stack = [top]
    try:
        while stack:
            dir_fd = stack.pop()
            try:
                yield dir_fd
                try:
                    children = _entries(dir_fd)
                except OSError:
                    continue
                for child, looks_like_folder in children:
                    if looks_like_folder:
                        try:
                            child_fd = _open_subdirectory(child, dir_fd)
                        except OSError:
                            continue
                        if child_fd is not None:
                            stack.append(child_fd)
            finally:
                os.close(dir_fd)
    finally:
        for dir_fd in stack:
            os.close(dir_fd)


def regular_file_bytes(root: Path) -> int:
    """Bytes of the regular files in `root` and below (apparent size, st_size), links not followed."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        total = 0
        for dir_fd in _walk_folders(fd, "."):
            try:
                with os.scandir(dir_fd) as iterator:
                    for entry in iterator:
                        if entry.is_file(follow_symlinks=False):
                            try:
                                total += entry.stat(follow_symlinks=False).st_size
                            except OSError:
                                continue
            except OSError:
                continue
        return total
    finally:
        os.close(fd)


def delete_now(located: Located) -> None:
    """Delete the located entry in one go: a folder with the descriptor-based rmtree, anything else unlinked."""
    info = os.stat(located.name, dir_fd=located.parent_fd, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        # With dir_fd, rmtree walks by descriptor and never follows a link, even one swapped in meanwhile.
        shutil.rmtree(located.name, dir_fd=located.parent_fd)
    else:
        os.unlink(located.name, dir_fd=located.parent_fd)


def iter_delete(located: Located) -> Generator[int, None, None]:
    """Delete the located entry entry by entry, children first, yielding the bytes freed by each entry.

    Lets the background worker report progress and stop between entries when a task is cancelled.
    Every step is relative to a folder descriptor opened without following links, so a folder
    swapped for a symlink while this runs is unlinked as a link, never walked into.
    """
    parent_fd, name = located.parent_fd, located.name
    top = _open_subdirectory(name, parent_fd)
    if top is None:
        yield _unlink(parent_fd, name)
        return
    # (name in its parent, descriptor, children still to delete), one per level being deleted.
    stack: list[tuple[str, int, list[tuple[str, bool]]]] = []
    try:
        stack.append((name, top, _entries(top)))
        while stack:
            folder, dir_fd, children = stack[-1]
            if not children:
                stack.pop()
                os.close(dir_fd)
                os.rmdir(folder, dir_fd=stack[-1][1] if stack else parent_fd)
                yield 0
                continue
            child, looks_like_folder = children.pop()
            child_fd = _open_subdirectory(child, dir_fd) if looks_like_folder else None
            if child_fd is None:
                try:
                    yield _unlink(dir_fd, child)
                    continue
                except IsADirectoryError:  # became a folder since it was listed
                    child_fd = _open_subdirectory(child, dir_fd)
                    if child_fd is None:
                        raise
            try:
                stack.append((child, child_fd, _entries(child_fd)))
            except OSError:
                os.close(child_fd)
                raise
    finally:
        for _, dir_fd, _ in stack:
            os.close(dir_fd)


def _unlink(dir_fd: int, name: str) -> int:
    size = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
    os.unlink(name, dir_fd=dir_fd)
    return size


def pull(entries: Iterator[int], limit: int) -> tuple[list[int], bool]:
    """Advance a deletion by at most `limit` entries; returns (bytes per entry, finished)."""
    sizes: list[int] = []
    for size in entries:
        sizes.append(size)
        if len(sizes) >= limit:
            return sizes, False
    return sizes, True
