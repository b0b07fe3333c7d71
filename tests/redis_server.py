"""A real, throwaway redis-server for the tests: loopback, a free port, no persistence.

Ends with the test that started it, and with the run even when that is killed (tests/processes.py).
Skipped when redis-server is not installed, unless EFILE_REQUIRE_REDIS is set (CI): then it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .processes import spawn_dying_with_us

REQUIRE_ENV = "EFILE_REQUIRE_REDIS"


def redis_server_binary() -> str:
    """The redis-server path, or skip (fail when EFILE_REQUIRE_REDIS is set)."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"redis-server is not installed but {REQUIRE_ENV} is set: apt-get install redis-server")
    pytest.skip(
        "redis-server is not installed (apt-get install redis-server); set EFILE_REQUIRE_REDIS=1 to fail instead"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = redis_server_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"redis-{self.port}.log").open("wb")
        self.process = spawn_dying_with_us(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = (self.workdir / f"redis-{self.port}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{text}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def start_redis(workdir: Path) -> RedisServer:
    """A started server on a free loopback port (another port if the first was taken meanwhile)."""
    for attempt in range(3):
        try:
            return RedisServer(port=free_port(), workdir=workdir).start()
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
