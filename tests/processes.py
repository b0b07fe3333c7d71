"""No process outlives the test run that started it: redis-server, efile-mcp servers, MCP stdio children.

A pytest plugin (tests/conftest.py registers it; `-p tests.processes` loads it in a run without that conftest).
Fixtures end what they start; this is the net under them, for the ways a run ends without its teardowns:

- at the end of the run (`pytest_unconfigure`, after every fixture's teardown) and at interpreter exit
  (`atexit`), every process still descending from this one is ended and named on stderr;
- on SIGTERM (a CI timeout, `kill`), the same, before the run dies of the signal as it would have;
- SIGINT (Ctrl-C) is pytest's: it runs the teardowns, then the end of the run sweeps.

`spawn_dying_with_us` starts a long-lived server that a SIGKILL of the run ends too (Linux parent-death
signal, through util-linux `setpriv` when it is installed).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

_PROC = Path("/proc")
_installed_in: int | None = None  # the pid that installed the handlers (a forked child must not sweep)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, read from /proc (empty where there is no /proc)."""
    parents: dict[int, int] = {}
    if not _PROC.is_dir():
        return parents
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":  # a zombie is already dead; its parent reaps it
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(pid: int | None = None) -> list[int]:
    """Every live process below `pid` (default: this one), children before grandchildren."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    frontier = [root]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, [])]
        found += frontier
    return found


def _name(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def end_descendants(grace: float = 5.0) -> list[str]:
    """SIGTERM every process below this one, SIGKILL what is left after `grace` seconds; returns their names."""
    found = descendants()
    names = [f"{pid} {_name(pid)}" for pid in found]
    for pid in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while (alive := [pid for pid in found if _alive(pid)]) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.02)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap()
    return names


def _alive(pid: int) -> bool:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _reap() -> None:
    """Collect our own ended children, so they do not linger as zombies (Popen objects may never wait)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def spawn_dying_with_us(args: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """Popen for a long-lived server: on Linux it also receives SIGTERM if this process dies, even of SIGKILL.

    The parent-death signal is tied to the thread that starts the child, so it is asked for only from the
    main thread (a worker thread may end while the server should run on).
    """
    setpriv = shutil.which("setpriv")
    if setpriv and sys.platform == "linux" and threading.current_thread() is threading.main_thread():
        args = [setpriv, "--pdeathsig", "TERM", "--", *args]
    return subprocess.Popen(list(args), **popen)


def _sweep(why: str) -> None:
    if os.getpid() != _installed_in:
        return
    names = end_descendants()
    if names:
        print(f"tests/processes.py: ended {len(names)} process(es) left running {why}: {names}", file=sys.stderr)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _sweep("when the run was terminated")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # die of the signal, as the sender expects


def pytest_configure(config: pytest.Config) -> None:
    global _installed_in
    if _installed_in == os.getpid():
        return
    _installed_in = os.getpid()
    atexit.register(_sweep, "at exit")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_unconfigure(config: pytest.Config) -> None:
    _sweep("after the run")
