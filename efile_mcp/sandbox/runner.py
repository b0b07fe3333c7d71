"""Run a sandbox on 127.0.0.1 in a daemon thread with its own event loop."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from efile_mcp.sandbox.service import Sandbox, SandboxConfig

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


class RunningSandbox:
    """A started sandbox: where to reach it, with what token, and its records. Stop it, or use `with`."""

    def __init__(self, sandbox: Sandbox, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket) -> None:
        self.sandbox = sandbox
        self._server = server
        self._thread = thread
        self._socket = sock
        host, port = sock.getsockname()[:2]
        self.port: int = port
        #: The client appends "/efile/openapi/v2/..." to this.
        self.base_url = f"http://{host}:{port}"

    @property
    def token(self) -> str:
        return self.sandbox.config.token

    @property
    def home(self) -> str:
        return self.sandbox.home

    @property
    def root(self) -> Path:
        return self.sandbox.config.root

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(_STOP_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(_STOP_TIMEOUT)
        self._socket.close()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:  # the token stays out of reprs and logs
        return f"RunningSandbox(base_url={self.base_url!r}, home={self.home!r}, root={str(self.root)!r})"


def run_sandbox_in_thread(config: SandboxConfig, *, port: int = 0) -> RunningSandbox:
    """Start a sandbox on 127.0.0.1 (`port` 0 = any free port) and return once it accepts connections."""
    sandbox = Sandbox(config)
    # Bound here rather than by uvicorn, so the port is known before the thread starts and no
    # other process can take it in between.
    # IPPROTO_TCP explicitly: asyncio disables Nagle's algorithm only on sockets created with it; without
    # it every answer on a kept-alive connection waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    server = uvicorn.Server(
        uvicorn.Config(
            sandbox.app,
            lifespan="on",
            # Nothing on stdout: it may be an MCP stdio channel. With log_config=None uvicorn
            # leaves logging alone and its warnings reach stderr through the root logger.
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="efile-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(_STOP_TIMEOUT)
            sock.close()
            raise RuntimeError("the efile sandbox did not start")
        time.sleep(0.01)
    return RunningSandbox(sandbox, server, thread, sock)
