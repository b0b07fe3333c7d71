"""An interrupted test run leaves no server behind: a run of a tiny test module that starts a redis-server and
an efile-mcp HTTP server the way the suite does is interrupted (Ctrl-C, or a CI timeout's SIGTERM) while they
run; afterwards none of them is running (tests/processes.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import child_env
from .processes import descendants
from .redis_server import redis_server_binary

ROOT = Path(__file__).resolve().parents[1]

INNER = """
import os
import threading
from pathlib import Path

from efile_mcp.sandbox import SandboxConfig, run_sandbox_in_thread, seed_sample_tree
from tests.redis_server import start_redis
from tests.e2e.test_http import http_process, settings_env


def test_holds_servers_until_interrupted(tmp_path):
    redis = start_redis(tmp_path / "redis")
    with run_sandbox_in_thread(SandboxConfig(root=seed_sample_tree(tmp_path / "home"))) as sandbox:
        # A test that forgets its server, and one whose teardown a signal may never run.
        with http_process(env=settings_env(sandbox, tmp_path / "audit.jsonl")):
            Path(os.environ["SERVERS_UP"]).write_text(str(redis.process.pid))
            threading.Event().wait()  # until the run is interrupted
"""


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_no_server_running(tmp_path: Path, signum: signal.Signals) -> None:
    redis_server_binary()  # skips (or fails in CI) without redis-server
    (tmp_path / "test_inner.py").write_text(INNER)
    up = tmp_path / "servers-up"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.processes", "test_inner.py"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(PYTHONPATH=str(ROOT), SERVERS_UP=str(up)),
    )
    try:
        deadline = time.monotonic() + 60
        while not up.exists():  # the servers start, or the inner run ends and says why
            if run.poll() is not None or time.monotonic() > deadline:
                run.kill()
                output = run.communicate()[0].decode(errors="replace")
                pytest.fail(f"the inner run's servers were not up:\n{output}")
            time.sleep(0.05)
        servers = descendants(run.pid)
        assert len(servers) >= 2 and all(_running(pid) for pid in servers), servers
        run.send_signal(signum)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    left = [pid for pid in servers if _running(pid)]
    assert left == [], f"still running after {signum.name}: {left}\n{output.decode(errors='replace')}"
