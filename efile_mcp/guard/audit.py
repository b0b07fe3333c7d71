"""Append-only JSONL audit log: one line per plan, refusal and execution, durable before the tool returns.

Each record is written with a single `write(2)` on an O_APPEND descriptor under an exclusive `flock`,
then `fsync`ed, so lines from concurrent writers (threads or processes) never interleave and a
process killed right after a tool returned loses no line. The file is created 0600: it names paths
of the person's storage. It never holds a secret: records are built from paths, statuses and ids only.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from ..errors import ConfigError

try:  # POSIX: an advisory lock keeps lines of several processes apart
    import fcntl
except ImportError:  # Windows (Claude Desktop there): one process writes; O_APPEND and the thread lock suffice
    fcntl = None  # type: ignore[assignment]


@contextmanager
def _exclusive(fd: int):  # type: ignore[no-untyped-def]
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


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
            self._fd = os.open(path, flags, 0o600)
            if hasattr(os, "fchmod") and os.fstat(self._fd).st_mode & 0o077:
                os.fchmod(self._fd, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the audit log {str(path)!r}: {exc.strerror or exc}; "
                "set EFILE_AUDIT_LOG (or --audit-log) to a writable file"
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    async def write(self, event: str, **fields: Any) -> None:
        """Append one record. Not abandoned on cancellation: the line lands even if the call is cancelled."""
        record = {"time": _now(), "event": event, **fields}
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode(
            "utf-8", "backslashreplace"
        )
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._append, line)

    def _append(self, data: bytes) -> None:
        with self._lock:
            if self._fd < 0:
                raise RuntimeError("audit log is closed")
            with _exclusive(self._fd):
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                os.fsync(self._fd)
