"""`python -m efile_mcp.sandbox.serve [DIR] --port N --token T --delay-ms D`: serve a sandbox until interrupted.

Logs go to stderr only.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path

from efile_mcp.sandbox.faults import KINDS, FaultPlan
from efile_mcp.sandbox.runner import run_sandbox_in_thread
from efile_mcp.sandbox.seed import seed_sample_tree
from efile_mcp.sandbox.service import SandboxConfig

log = logging.getLogger("efile_mcp.sandbox")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m efile_mcp.sandbox.serve", description=__doc__)
    parser.add_argument(
        "dir",
        nargs="?",
        type=Path,
        help="local directory served as the home (default: a fresh temporary directory with the sample tree)",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--token", help="token clients must send (default: random, printed to stderr)")
    parser.add_argument("--user", default="demo", help="user name; the home is /public/home/USER")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="simulated round trip added to every request")
    parser.add_argument("--seed", action="store_true", help="populate DIR with the sample tree")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. rate_limit@async-remove:rate=0.3 or http_429:burst=2:seconds=1 "
        f"(kinds: {', '.join(KINDS)}); repeatable",
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="random seed for fault rates")
    args = parser.parse_args(argv)
    try:
        faults = FaultPlan.parse(args.fault, seed=args.fault_seed) if args.fault else None
    except (ValueError, TypeError) as exc:
        parser.error(f"--fault: {exc}")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    root = args.dir
    scratch = None
    if root is None:
        scratch = tempfile.TemporaryDirectory(prefix="efile-sandbox-")
        root = seed_sample_tree(Path(scratch.name) / "home")
    else:
        root.mkdir(parents=True, exist_ok=True)
        if args.seed:
            seed_sample_tree(root)
    config = SandboxConfig(root=root, user=args.user, delay=args.delay_ms / 1000)
    if args.token:
        config.token = args.token

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with run_sandbox_in_thread(config, port=args.port) as running:
        running.sandbox.faults = faults
        log.info("efile sandbox serving %s at %s (home %s)", root, running.base_url, running.home)
        if not args.token:
            # A generated token must reach the operator somehow; stderr only, never stdout or answers.
            log.info("token: %s", config.token)
        try:
            while not stopped.wait(0.5) and running.alive:
                pass
        except KeyboardInterrupt:
            pass
        log.info("stopping")
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
