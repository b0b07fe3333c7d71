"""Append-only JSONL audit log: one line per plan, refusal, intent and execution, durable before the tool returns.

Each record is written with a single `write(2)` on an O_APPEND descriptor under an exclusive `flock`,
then `fsync`ed, so lines from concurrent writers (threads or processes) never interleave and a
process killed right after a tool returned loses no line. The file is created 0600: it names paths
of the person's storage. It never holds a secret: records are built from paths, statuses and ids only.

It fails closed: a record that cannot be written and fsynced raises `AuditUnavailable` (never a bare
OSError), and the guard writes its `intent` record before sending a removal, so a full disk means
nothing is sent. A torn half line from a disk that filled mid-record is taken back.

Every line is one line for any reader: U+2028, U+2029 and U+0085 (which `str.splitlines()` and some
log tools break on) are written as JSON escapes. Records are bounded: a string longer than any path
the policy accepts is cut to its start and its length, and a refusal lists at most
`REFUSAL_PATHS_LISTED` paths plus the count of the rest.

A file rotated away (renamed by logrotate, or deleted) is noticed before the next write by comparing
the path's device and inode with the open descriptor's, as `logging.handlers.WatchedFileHandler`
does, and the path is opened again. The file is never reached through a symbolic link: a new one is
created with O_CREAT|O_EXCL|O_NOFOLLOW, an existing one opened with O_NOFOLLOW, and a link planted
at the path is refused (where the platform has no O_NOFOLLOW, as on Windows, an lstat check stands in).

An `intent` record names the process that wrote it (`process`: host, pid and a random nonce per
process), so that the reconciliation (reconcile.py) can tell an execution still running elsewhere from
one whose process died before recording its outcome.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from ..errors import AuditUnavailable, ConfigError
from .paths import MAX_PATH_BYTES

try:  # POSIX: an advisory lock keeps lines of several processes apart
    import fcntl
except ImportError:  # Windows (Claude Desktop there): one process writes; O_APPEND and the thread lock suffice
    fcntl = None  # type: ignore[assignment]

#: A string longer than this (no path the policy accepts is) is cut to its first `STRING_KEPT` characters.
STRING_MAX = MAX_PATH_BYTES
STRING_KEPT = 300
#: The most paths a refusal record lists; the rest are counted in `paths_not_listed`.
REFUSAL_PATHS_LISTED = 200
#: This process, as intent records name it: `host:pid:nonce` (the nonce tells a restarted pid 1 apart).
PROCESS = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

_LINE_BREAKERS = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}  # json.dumps escapes the C0 ones itself

#: What a failed record means, by event: the audit is written before a plan, refusal or intent acts.
_CONSEQUENCE = {
    "intent": "nothing was deleted: the removal was not sent",
    "plan": "nothing was deleted (a dry run deletes nothing) and no confirmation token was issued",
    "refusal": "nothing was deleted (the call was refused)",
    "execution": "the removal had already been sent, so its outcome is missing from the audit log: "
    "follow its tasks with get_task and check with list_files",
    "cancel": "the cancel had already been sent, so it is missing from the audit log: check with get_task",
}
_FIX = (
    "To fix: free space on that disk (or raise the quota), or set EFILE_AUDIT_LOG (or --audit-log) to a "
    "writable file elsewhere and restart efile-mcp; then dry-run again."
)

_FLAGS = (
    os.O_WRONLY
    | os.O_APPEND
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at the path fails the open instead of hanging it
)


class _NotAFile(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@contextmanager
def _exclusive(fd: int) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def default_audit_path() -> Path:
    from platformdirs import user_state_path

    return user_state_path("efile-mcp", appauthor=False) / "audit.jsonl"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bounded(value: Any) -> Any:
    """`value` as JSON-ready data with every over-long string cut to its start and its length."""
    if isinstance(value, str):
        if len(value) > STRING_MAX:
            return f"{value[:STRING_KEPT]}…({len(value)} characters)"
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(key)[:STRING_MAX]: _bounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_bounded(item) for item in value]
    return _bounded(str(value))


def encode_record(event: str, fields: dict[str, Any]) -> bytes:
    """One bounded record as one JSONL line (UTF-8, no character a line reader breaks on)."""
    record: dict[str, Any] = {"time": _now(), "event": event, **fields}
    if (
        event == "refusal"
        and isinstance(record.get("paths"), list | tuple)
        and len(record["paths"]) > REFUSAL_PATHS_LISTED
    ):
        paths = list(record["paths"])
        record["paths"] = paths[:REFUSAL_PATHS_LISTED]
        record["paths_not_listed"] = len(paths) - REFUSAL_PATHS_LISTED
    text = json.dumps(_bounded(record), ensure_ascii=False, separators=(",", ":"))
    return (text.translate(_LINE_BREAKERS) + "\n").encode("utf-8", "backslashreplace")


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._fd = self._open()
        except (OSError, _NotAFile) as exc:
            raise ConfigError(
                f"cannot write the audit log {str(path)!r}: {self._why(exc)}; "
                "set EFILE_AUDIT_LOG (or --audit-log) to a writable file"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    async def write(self, event: str, **fields: Any) -> None:
        """Append one record, durable on return; `AuditUnavailable` if it cannot be.

        Not abandoned on cancellation: the line lands even if the call is cancelled.
        """
        if event == "intent":
            fields = {**fields, "process": PROCESS}
        line = encode_record(event, fields)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._append, line, event)

    # ------------------------------------------------------------------ the file

    def _open(self) -> int:
        """Open the audit file at its path, never through a link: an existing one, else a new 0600 one."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.path.islink(self.path):  # O_NOFOLLOW refuses it too; this also covers platforms without it
            raise _NotAFile("it is a symbolic link, and efile-mcp does not follow links for its audit log")
        try:
            fd = os.open(self.path, _FLAGS)
        except FileNotFoundError:
            try:
                fd = os.open(self.path, _FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # created in between (another efile-mcp): open what is there now
                fd = os.open(self.path, _FLAGS)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _NotAFile("it is not a regular file")
            if hasattr(os, "fchmod") and info.st_mode & 0o077:
                os.fchmod(fd, 0o600)
            if fcntl is not None and hasattr(os, "O_NONBLOCK"):
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, _NotAFile):
            return exc.why
        if isinstance(exc, OSError) and os.path.islink(self.path):
            return "it is a symbolic link, and efile-mcp does not follow links for its audit log"
        return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__

    def _current(self) -> int:
        """The descriptor of the file now at `path`: opened again if it was rotated away or deleted."""
        try:
            at_path: os.stat_result | None = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            at_path = None
        if self._fd >= 0 and at_path is not None:
            own = os.fstat(self._fd)
            if (own.st_dev, own.st_ino) == (at_path.st_dev, at_path.st_ino):
                return self._fd
        fd = self._open()
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        return fd

    def _append(self, data: bytes, event: str = "") -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("audit log is closed")
            try:
                fd = self._current()
                with _exclusive(fd):
                    view = memoryview(data)
                    written = 0
                    try:
                        while written < len(data):
                            written += os.write(fd, view[written:])
                    except OSError:
                        if written:  # take the torn half line back, or the next record would be glued to it
                            try:
                                os.ftruncate(fd, os.fstat(fd).st_size - written)
                            except OSError:
                                pass
                        raise
                    os.fsync(fd)
            except (OSError, _NotAFile) as exc:
                consequence = _CONSEQUENCE.get(event, "this record is not in the audit log")
                raise AuditUnavailable(
                    f"the audit log {str(self.path)!r} could not be written: {self._why(exc)}; {consequence}. {_FIX}"
                ) from None
