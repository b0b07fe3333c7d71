"""Shared pieces of the benchmarks: result rows, a delayed sandbox, file trees, a raw stdio JSON-RPC session.

Every figure is a ratio against a baseline measured in the same run (machines are noisy), and the
sandbox adds a 20 ms round trip to every request so the figures reflect request counts and
concurrency rather than loopback speed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import httpx2 as httpx

from efile_mcp.models.wire import ASYNC_REMOVE, TASK_LIST
from efile_mcp.settings import Settings

# Before any MCPServer exists: its constructor calls logging.basicConfig(INFO) with a rich handler,
# which would print (and time) a line per HTTP request of the in-process runs.
logging.basicConfig(level=logging.WARNING)

RTT = 0.020  # seconds added by the sandbox to every request: a WAN round trip
PYTHON = sys.executable
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass
class Row:
    """One line of the table. `ratio` = value / baseline (lower is better) when there is a baseline."""

    section: str
    measure: str
    value: float
    unit: str
    baseline: float | None = None
    target: float | None = None  # the most the ratio (or, without a baseline, the value) may be
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.baseline in (None, 0) else self.value / self.baseline

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        measured = self.ratio if self.ratio is not None else self.value
        return "PASS" if measured <= self.target else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "verdict": self.verdict}


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- sandbox and trees


# The sandbox's own disk work is the stand-in API's cost, not ours: on a RAM file system creating and
# deleting 10,000 files takes a fraction of a second instead of many seconds on a slow VM disk.
_FAST_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


class Sandbox:
    """A sandbox efile API in its own process (see sandbox_process.py), over a local directory."""

    def __init__(self, root: Path, delay: float) -> None:
        self.root = root
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop/close)
        self._proc = subprocess.Popen(
            [PYTHON, str(HERE / "sandbox_process.py"), str(root), str(delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=REPO,
        )
        hello = self._proc.stdout.readline()  # type: ignore[union-attr]
        if not hello:
            self._stderr.seek(0)
            raise RuntimeError(f"the sandbox did not start: {self._stderr.read().decode(errors='replace')}")
        info = json.loads(hello)
        self.base_url: str = info["base_url"]
        self.token: str = info["token"]
        self.home: str = info["home"]

    def _ask(self, command: str) -> Any:
        assert self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return json.loads(self._proc.stdout.readline())

    def reset_counts(self) -> None:
        self._ask("reset")

    def request_counts(self) -> dict[str, int]:
        """Requests received by endpoint ("file/list", "async-remove", "task/list", ...) since the last reset."""
        return self._ask("counts")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self._proc.pid)

    def stop(self) -> None:
        assert self._proc.stdin
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._stderr.close()


@contextmanager
def delayed_sandbox() -> Iterator[Sandbox]:
    """A sandbox over a fresh temporary directory, answering every request after RTT seconds."""
    scratch = Path(tempfile.mkdtemp(prefix="efile-bench-", dir=_FAST_TMP))
    root = scratch / "home"
    root.mkdir()
    sandbox = Sandbox(root, RTT)
    try:
        yield sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def make_tree(sandbox: Sandbox, name: str, parents: int, per_parent: int) -> list[str]:
    """`parents` directories of `per_parent` small files under home/name; returns their virtual paths."""
    paths = []
    for d in range(parents):
        local = sandbox.root / name / f"d{d:04d}"
        local.mkdir(parents=True)
        for f in range(per_parent):
            (local / f"f{f:04d}.dat").write_bytes(b"x" * 64)
            paths.append(f"{sandbox.home}/{name}/d{d:04d}/f{f:04d}.dat")
    return paths


def remaining_files(sandbox: Sandbox, name: str) -> int:
    return sum(len(files) for _, _, files in os.walk(sandbox.root / name))


def _state_dir(audit_log: Path) -> Path:
    """A state store of the run's own, beside its audit log: never the person's (nor a shared) one."""
    directory = audit_log.parent / f"{audit_log.stem}-state"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def settings_for(sandbox: Sandbox, audit_log: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": sandbox.base_url,
        "token": sandbox.token,
        "allowed_roots": (sandbox.home,),
        "audit_log": audit_log,
        "max_paths": 50_000,
        "state_dir": _state_dir(audit_log),
    }
    return Settings(**{**values, **overrides})


def server_env(sandbox: Sandbox, audit_log: Path, **extra: str) -> dict[str, str]:
    """The environment Claude Desktop would give `python -m efile_mcp`, pointed at the sandbox."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EFILE_")}
    env.update(
        EFILE_BASE_URL=sandbox.base_url,
        EFILE_TOKEN=sandbox.token,
        EFILE_ALLOWED_ROOTS=sandbox.home,
        EFILE_AUDIT_LOG=str(audit_log),
        EFILE_STATE_DIR=str(_state_dir(audit_log)),
        **extra,
    )
    return env


# ---------------------------------------------------------------------------- the plain-httpx baselines


def baseline_remove(sandbox: Sandbox, paths: Sequence[str]) -> float:
    """Seconds to post `paths` to async-remove in batches of 100, one after another, with no checks."""
    with httpx.Client(base_url=sandbox.base_url, headers={"token": sandbox.token}, timeout=60) as http:
        started = time.perf_counter()
        for i in range(0, len(paths), 100):
            http.post(ASYNC_REMOVE, json=[{"sourcePath": p} for p in paths[i : i + 100]])
        return time.perf_counter() - started


def remove_for_task_ids(sandbox: Sandbox, paths: Sequence[str]) -> list[str]:
    """Remove `paths` directly (setup, not timed) and return the task ids the API handed back."""
    ids = []
    with httpx.Client(base_url=sandbox.base_url, headers={"token": sandbox.token}, timeout=60) as http:
        for i in range(0, len(paths), 100):
            answer = http.post(ASYNC_REMOVE, json=[{"sourcePath": p} for p in paths[i : i + 100]]).json()
            ids += [task["taskId"] for task in answer["data"]["fileOperTasks"]]
    return ids


def baseline_task_list(sandbox: Sandbox, task_ids: Sequence[str]) -> float:
    """Seconds to look `task_ids` up with task/list, 100 ids a request, one request after another."""
    with httpx.Client(base_url=sandbox.base_url, headers={"token": sandbox.token}, timeout=60) as http:
        started = time.perf_counter()
        for i in range(0, len(task_ids), 100):
            http.post(TASK_LIST, json={"taskIds": list(task_ids[i : i + 100])})
        return time.perf_counter() - started


# ---------------------------------------------------------------------------- raw JSON-RPC over stdio

INITIALIZE_PARAMS = {
    "protocolVersion": "2025-11-25",  # the handshake era Claude Desktop speaks
    "capabilities": {},
    "clientInfo": {"name": "efile-bench", "version": "0"},
}


class StdioSession:
    """A server subprocess spoken to in raw JSON-RPC lines: no client library in the measurement."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        # stderr to a file, not a pipe: a chatty server must never block on it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop/close)
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=REPO
        )
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.last_line_bytes = 0  # size of the last answer, to report what a host has to parse

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.wait_answer(self.start_request(method, params))

    def start_request(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a request without waiting for its answer; returns its id."""
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, **({"params": params} if params else {})})
        return self._next_id

    def wait_answer(self, request_id: int) -> Any:
        """The result of request `request_id` (answers to other requests are kept for their turn)."""
        assert self.proc.stdout is not None
        while request_id not in self._answers:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited before answering: {self.stderr_text()[-2000:]}")
            message = json.loads(line)
            if "id" in message and "method" not in message:  # an answer, not a notification or request
                self._answers[message["id"]] = message
                self.last_line_bytes = len(line)
        message = self._answers.pop(request_id)
        if "error" in message:
            raise RuntimeError(f"request {request_id} failed: {message['error']}")
        return message["result"]

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def handshake(self) -> None:
        self.request("initialize", INITIALIZE_PARAMS)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self.request("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            raise RuntimeError(
                f"{name} answered an error: {result['content'][0]['text'][:500]}\n"
                f"server stderr (tail): {self.stderr_text()[-2000:]}"
            )
        return result["structuredContent"]

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process has had so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def efile_stdio(sandbox: Sandbox, audit_log: Path, *flags: str) -> StdioSession:
    """`python -m efile_mcp` as Claude Desktop starts it (settings from the environment), handshake done."""
    session = StdioSession([PYTHON, "-m", "efile_mcp", *flags], env=server_env(sandbox, audit_log))
    session.handshake()
    return session
