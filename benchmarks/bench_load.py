"""Section `load`: one HTTP replica under 20 and 50 concurrent sessions, against a bare SDK server; and a soak.

The server under test is `python -m efile_mcp --transport http` over the delayed sandbox (20 ms per
request). The baseline is `baseline_http_server.py`: a bare `MCPServer` over the same Streamable
HTTP, with the same two tools reduced to what the SDK must do anyway: `storage_status` answers a
small fixed object (no API call, as efile-mcp's does none), `list_files` makes the one `file/list`
request to the same sandbox and returns its entries. Both run the same calls from the same client:
raw JSON-RPC over httpx (no client library in the measurement), each session in its own task.

Figures: tool calls per second per replica, p50 and p95 latency of each tool at 20 and 50 sessions,
and the server's CPU milliseconds per call (from /proc, so the load generator's own CPU is not
counted). Then the soak: `SOAK_FLOWS` flows (open a session, storage_status, list_files, a
remove_paths dry run, close the session), 20 at a time; the server's RSS after the first 200 flows
and at the end. The memory must stay flat: within 10 % of its value after the first 200.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
from common import HERE, PYTHON, REPO, Row, cpu_seconds, delayed_sandbox, server_env

HTTP_TOKEN = "benchmark-only-http-token-0123456789"
PROTOCOL = "2025-11-25"
SESSIONS = (20, 50)
CALLS_PER_SESSION = 12  # per tool and concurrency level: 20 sessions x 12 = 240 calls of each tool
QUICK_CALLS = 4
SOAK_FLOWS = 2_000
QUICK_SOAK_FLOWS = 400
SOAK_CONCURRENCY = 20
SOAK_WARMUP = 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpServer:
    """A server process on a free loopback port; its pid for CPU and RSS."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, env=env, cwd=REPO
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._stderr.seek(0)
                    raise RuntimeError(
                        f"server did not start: {self._stderr.read().decode(errors='replace')}"
                    ) from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


class Session:
    """One MCP session in raw JSON-RPC over Streamable HTTP (the 2025-11-25 era: sessions held by the server)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url
        self.session_id: str | None = None
        self._ids = itertools.count(1)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {HTTP_TOKEN}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        if self.session_id:
            headers |= {"Mcp-Session-Id": self.session_id, "Mcp-Protocol-Version": PROTOCOL}
        return headers

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, **({"params": params} if params else {})}
        answer = await self.http.post(self.url, headers=self._headers(), content=json.dumps(body))
        if answer.status_code != 200:
            raise RuntimeError(f"{method}: HTTP {answer.status_code}: {answer.text[:300]}")
        self.session_id = self.session_id or answer.headers.get("mcp-session-id")
        text = answer.text
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and '"id"' in line)
        message = json.loads(text)
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message["result"]

    async def open(self) -> None:
        params = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench-load", "version": "0"}}
        await self.request("initialize", params)
        body = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await self.http.post(self.url, headers=self._headers(), content=json.dumps(body))

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await self.request("tools/call", {"name": tool, "arguments": arguments})
        if result.get("isError"):
            raise RuntimeError(f"{tool}: {result['content'][0]['text'][:300]}")
        return dict(result.get("structuredContent") or {})

    async def close(self) -> None:
        if self.session_id:
            await self.http.delete(self.url, headers=self._headers())


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


async def _load(server: HttpServer, sessions: int, calls: list[tuple[str, dict[str, Any]]], rounds: int) -> dict:
    """`sessions` concurrent sessions, each making `calls` `rounds` times; latencies by tool, CPU, wall."""
    latencies: dict[str, list[float]] = {tool: [] for tool, _ in calls}
    limits = httpx.Limits(max_connections=sessions + 10, max_keepalive_connections=sessions + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        opened = [Session(http, server.url) for _ in range(sessions)]
        async with anyio.create_task_group() as tg:
            for session in opened:
                tg.start_soon(session.open)
        cpu_before, started = server.cpu_seconds(), time.perf_counter()

        async def work(session: Session) -> None:
            for _ in range(rounds):
                for tool, arguments in calls:
                    began = time.perf_counter()
                    await session.call(tool, arguments)
                    latencies[tool].append(time.perf_counter() - began)

        async with anyio.create_task_group() as tg:
            for session in opened:
                tg.start_soon(work, session)
        wall, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu_before
        async with anyio.create_task_group() as tg:
            for session in opened:
                tg.start_soon(session.close)
    count = sum(len(v) for v in latencies.values())
    return {"latencies": latencies, "calls": count, "wall": wall, "cpu": cpu}


async def _soak(server: HttpServer, home: str, flows: int) -> tuple[float, float, float]:
    """RSS (MB) after the warm-up flows and after all of them, and the seconds it took."""
    rss_after_warmup = 0.0
    done = 0
    started = time.perf_counter()
    limiter = anyio.Semaphore(SOAK_CONCURRENCY)
    limits = httpx.Limits(max_connections=SOAK_CONCURRENCY + 10, max_keepalive_connections=SOAK_CONCURRENCY + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:

        async def flow(n: int) -> None:
            nonlocal done, rss_after_warmup
            async with limiter:
                session = Session(http, server.url)
                await session.open()
                await session.call("storage_status", {})
                await session.call("list_files", {"path": f"{home}/load", "limit": 20})
                await session.call("remove_paths", {"paths": [f"{home}/load/f{n % 50:03d}.dat"]})
                await session.close()
            done += 1
            if done == SOAK_WARMUP:
                rss_after_warmup = server.rss_mb()

        for batch in range(0, flows, 500):  # bounded number of pending tasks
            async with anyio.create_task_group() as tg:
                for n in range(batch, min(flows, batch + 500)):
                    tg.start_soon(flow, n)
    return rss_after_warmup, server.rss_mb(), time.perf_counter() - started


def run(quick: bool, context: dict[str, Any]) -> list[Row]:
    rounds = QUICK_CALLS if quick else CALLS_PER_SESSION
    flows = QUICK_SOAK_FLOWS if quick else SOAK_FLOWS
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-load-") as scratch:
        load_dir = sandbox.root / "load"
        load_dir.mkdir()
        for n in range(50):
            (load_dir / f"f{n:03d}.dat").write_bytes(b"x" * 64)
        env = server_env(
            sandbox,
            Path(scratch) / "audit.jsonl",
            EFILE_HTTP_TOKEN=HTTP_TOKEN,
            EFILE_HTTP_SESSION_MAX="1000",
            EFILE_HTTP_SESSION_MAX_PER_TOKEN="1000",
        )
        port = _free_port()
        efile = HttpServer([PYTHON, "-m", "efile_mcp", "--transport", "http", "--port", str(port)], env, port)
        base_port = _free_port()
        baseline_env = {**env, "BASELINE_SANDBOX_URL": sandbox.base_url, "BASELINE_SANDBOX_TOKEN": sandbox.token}
        baseline = HttpServer([PYTHON, str(HERE / "baseline_http_server.py"), str(base_port)], baseline_env, base_port)
        calls = [("storage_status", {}), ("list_files", {"path": f"{sandbox.home}/load", "limit": 20})]
        try:
            for sessions in SESSIONS:
                measured = {}
                for name, server in (("baseline", baseline), ("efile", efile)):
                    anyio.run(_load, server, sessions, calls, 1)  # warm-up: imports, first sign-in, caches
                    sandbox.reset_counts()
                    measured[name] = anyio.run(_load, server, sessions, calls, rounds)
                    measured[name]["requests"] = sum(sandbox.request_counts().values())
                ours, bare = measured["efile"], measured["baseline"]
                raw[f"sessions_{sessions}"] = {
                    k: {key: v[key] for key in ("calls", "wall", "cpu", "requests")} for k, v in measured.items()
                }
                note = f"{ours['calls']} calls over {sessions} sessions"
                rows.append(
                    Row(
                        "load",
                        f"tool calls per second, {sessions} sessions (higher is better)",
                        ours["calls"] / ours["wall"],
                        "/s",
                        bare["calls"] / bare["wall"],
                        note=note,
                    )
                )
                rows.append(
                    Row(
                        "load",
                        f"server CPU per call, {sessions} sessions",
                        1000 * ours["cpu"] / ours["calls"],
                        "ms",
                        1000 * bare["cpu"] / bare["calls"],
                        note="from /proc: the server process alone; sandbox requests per call "
                        f"{ours['requests'] / ours['calls']:.2f} (baseline {bare['requests'] / bare['calls']:.2f})",
                    )
                )
                for tool, _ in calls:
                    for label, share in (("p50", 0.5), ("p95", 0.95)):
                        rows.append(
                            Row(
                                "load",
                                f"{tool} {label}, {sessions} sessions",
                                1000 * _percentile(ours["latencies"][tool], share),
                                "ms",
                                1000 * _percentile(bare["latencies"][tool], share),
                            )
                        )
            baseline.stop()
            warm, end, seconds = anyio.run(_soak, efile, sandbox.home, flows)
            raw["soak"] = {"flows": flows, "rss_after_warmup": warm, "rss_end": end, "seconds": seconds}
            rows.append(
                Row(
                    "load",
                    f"soak: RSS after {flows:,} flows vs after {SOAK_WARMUP}",
                    end,
                    "MB",
                    warm,
                    target=1.10,
                    note=f"{SOAK_CONCURRENCY} at a time: open, storage_status, list_files, dry run, close; {seconds:.0f} s",
                )
            )
        finally:
            efile.stop()
            if baseline.proc.poll() is None:
                baseline.stop()
    context["load"] = raw
    return rows


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(HERE))
    from run import print_table

    started = time.perf_counter()
    print_table(run("--quick" in sys.argv, {}))
    print(f"[load: {time.perf_counter() - started:.0f} s]", file=sys.stderr)
