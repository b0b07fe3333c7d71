"""file/mkdir, file/move, file/rename and file/upload of the sandbox (efile-api.md section 5a).

Like deletion (fs.py), nothing here acts on a path string the kernel could resolve through a link:
the source's parent and the target folder are opened by descriptor (links on the way resolved by the
sandbox's own resolver, never leaving DIR), and every action is `renameat`/`mkdirat`/`openat` relative
to them. A moved entry is renamed, never copied: a folder moves whole with everything inside, its own
modification time kept, and a link inside it (or the source itself, if a link) moves as a link.

`uncover` (the default) never replaces an existing target, even one created between the check and
the move: `renameat2(RENAME_NOREPLACE)` makes the kernel refuse it (911021).

What a call with several sources does when one of them cannot move is not documented. The sandbox
checks every source (it exists; its name is free in the target) before moving any, so a 911020 or
911021 found then moved nothing; a failure during the moves (a race) stops there and answers the
error: the sources before it were moved. A client must tolerate both (list both places).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from dataclasses import dataclass
from typing import Any

from efile_mcp.sandbox.envelope import ApiError
from efile_mcp.sandbox.fs import Located, PathMapper, delete_now

__all__ = ["MoveRecord", "make_folder", "move_paths", "rename_path", "split_sources", "truthy", "write_upload"]

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
#: The largest upload the sandbox accepts: it is for manifests and small files, not bulk data.
UPLOAD_MAX_BYTES = 16 * 1024 * 1024

_renameat2: Any = None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _renameat2 = _libc.renameat2
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _renameat2.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc, or too old: check-then-rename (a narrow race) instead
    _renameat2 = None


@dataclass(frozen=True)
class MoveRecord:
    source: str
    target: str


def truthy(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("true", "1", "yes")


def split_sources(value: str | None) -> list[str]:
    """`sourcePaths` as the API reads it: comma-separated, so a name holding a comma is cut in two."""
    if not value:
        raise ApiError("10003", "sourcePaths is required")
    parts = [part.strip() for part in value.split(",")]
    if any(not part for part in parts):
        raise ApiError("10004", "sourcePaths holds an empty path")
    return parts


def _exists(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _rename_no_replace(src_fd: int, src: str, dst_fd: int, dst: str, virtual_target: str) -> None:
    if _renameat2 is not None:
        if _renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        # ENOSYS / EINVAL: no RENAME_NOREPLACE here (EINVAL is also a folder moved into itself: the plain
        # rename below says so again).
        if code not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code))
    if _exists(dst_fd, dst) is not None:
        raise FileExistsError(errno.EEXIST, f"target exists: {virtual_target}")
    os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def _error(error: OSError, source: str, target: str) -> ApiError:
    if isinstance(error, FileExistsError) or error.errno in (errno.EEXIST, errno.ENOTEMPTY):
        return ApiError("911021", f"file already exists: {target}")
    if isinstance(error, FileNotFoundError):
        return ApiError("911020", f"file or directory does not exist: {source}")
    if isinstance(error, PermissionError):
        return ApiError("911030", f"permission denied: {source}")
    if error.errno == errno.EINVAL:
        return ApiError("10004", f"cannot move {source} into itself ({target})")
    if error.errno in (errno.ENOTDIR, errno.EISDIR):
        return ApiError("911022", f"target is not a folder: {target}")
    return ApiError("10001", f"internal error: {error.strerror or error}")


def move_paths(fs: PathMapper, sources: list[str], target: str, *, cover: bool) -> list[MoveRecord]:
    """Move each source into the folder `target`, keeping its name. Blocking: run it in a worker thread."""
    target_virtual = fs.normalise(target)
    target_fd = fs.open_directory(target)
    located: list[tuple[str, Located]] = []
    try:
        for source in sources:
            place = fs.locate(source)
            located.append((fs.normalise(source), place))
            if _exists(place.parent_fd, place.name) is None:
                raise ApiError("911020", f"file or directory does not exist: {source}")
        names = [place.name for _, place in located]
        if len(set(names)) != len(names):
            raise ApiError("911021", f"two sources share a name in {target_virtual}")
        for virtual, place in located:
            if virtual == f"{target_virtual.rstrip('/')}/{place.name}":
                raise ApiError("911507", f"source and target are the same: {virtual}")
            if not cover and _exists(target_fd, place.name) is not None:
                raise ApiError("911021", f"file already exists: {target_virtual.rstrip('/')}/{place.name}")
        moved: list[MoveRecord] = []
        for virtual, place in located:
            destination = f"{target_virtual.rstrip('/')}/{place.name}"
            try:
                if cover:
                    existing = _exists(target_fd, place.name)
                    if existing is not None:
                        delete_now(Located(target_fd, place.name))
                    os.rename(place.name, place.name, src_dir_fd=place.parent_fd, dst_dir_fd=target_fd)
                else:
                    _rename_no_replace(place.parent_fd, place.name, target_fd, place.name, destination)
            except OSError as error:
                raise _error(error, virtual, destination) from None
            moved.append(MoveRecord(virtual, destination))
        return moved
    finally:
        os.close(target_fd)
        for _, place in located:
            place.close()


def rename_path(fs: PathMapper, path: str, new_name: str) -> MoveRecord:
    """Give the entry at `path` the name `new_name` in the same folder. Blocking: run it in a worker thread."""
    if not new_name or new_name in (".", "..") or "/" in new_name or "\x00" in new_name:
        raise ApiError("911700", f"file name has illegal characters: {new_name!r}")
    virtual = fs.normalise(path)
    with fs.locate(path) as place:
        if _exists(place.parent_fd, place.name) is None:
            raise ApiError("911020", f"file or directory does not exist: {virtual}")
        destination = f"{virtual.rpartition('/')[0]}/{new_name}"
        if place.name == new_name:
            raise ApiError("911507", f"source and target are the same: {virtual}")
        try:
            _rename_no_replace(place.parent_fd, place.name, place.parent_fd, new_name, destination)
        except FileExistsError:
            raise ApiError("911021", f"file already exists: {destination}") from None
        except OSError as error:
            code = _error(error, virtual, destination)
            raise ApiError("911031" if code.code == "10001" else code.code, code.msg) from None
    return MoveRecord(virtual, destination)


def make_folder(fs: PathMapper, path: str, *, create_parents: bool) -> None:
    """mkdir (-p with `create_parents`: an existing folder is then not an error). Blocking."""
    names = fs.relative_parts(path)
    if not names:
        if create_parents:
            return
        raise ApiError("911021", f"file already exists: {fs.normalise(path)}")
    home = fs.home.rstrip("/")
    prefixes = [home + "/" + "/".join(names[: i + 1]) for i in range(len(names))]
    for index, prefix in enumerate(prefixes):
        last = index == len(prefixes) - 1
        if not create_parents and not last:
            continue
        with fs.locate(prefix) as place:
            try:
                os.mkdir(place.name, 0o755, dir_fd=place.parent_fd)
                continue
            except FileExistsError:
                pass
            except FileNotFoundError:
                raise ApiError("911020", f"file or directory does not exist: {prefix}") from None
            except PermissionError:
                raise ApiError("911030", f"permission denied: {prefix}") from None
        if last and not create_parents:
            raise ApiError("911021", f"file already exists: {prefix}")
        # It exists: fine with createParents if it is a folder (a link to a folder inside DIR counts, as for
        # mkdir -p); open_directory answers 911022 for a file.
        os.close(fs.open_directory(prefix))


def write_upload(fs: PathMapper, folder: str, name: str, content: bytes, *, cover: bool) -> str:
    """Write one uploaded file into `folder` (never through a link). Blocking. Returns its virtual path."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise ApiError("911700", f"file name has illegal characters: {name!r}")
    if len(content) > UPLOAD_MAX_BYTES:
        raise ApiError("10004", f"the sandbox accepts uploads of at most {UPLOAD_MAX_BYTES} bytes")
    folder_fd = fs.open_directory(folder)
    destination = f"{fs.normalise(folder).rstrip('/')}/{name}"
    try:
        existing = _exists(folder_fd, name)
        if existing is not None and (not cover or stat.S_ISDIR(existing.st_mode)):
            raise ApiError("911021", f"file already exists: {destination}")
        temporary = f".{name}.upload-{os.getpid()}-{id(content)}"
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder_fd
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            if cover:
                os.rename(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            else:
                _rename_no_replace(folder_fd, temporary, folder_fd, name, destination)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=folder_fd)
            raise
    except FileExistsError:
        raise ApiError("911021", f"file already exists: {destination}") from None
    except PermissionError:
        raise ApiError("911030", f"permission denied: {destination}") from None
    finally:
        os.close(folder_fd)
    return destination
