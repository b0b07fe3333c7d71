"""The sandbox efile API in its own process, as the benchmarks use it: `python sandbox_process.py ROOT DELAY`.

The real API runs on another machine; in a separate process the sandbox's CPU never competes with
the server under test for one interpreter lock. Prints one JSON line (base_url, token, home), then
answers commands on stdin, one a line: `counts` (requests by endpoint since the last `reset`),
`reset`. Stops when stdin closes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from efile_mcp.sandbox import SandboxConfig, run_sandbox_in_thread


def main() -> None:
    root, delay = Path(sys.argv[1]), float(sys.argv[2])
    with run_sandbox_in_thread(SandboxConfig(root=root, delay=delay)) as running:
        print(json.dumps({"base_url": running.base_url, "token": running.token, "home": running.home}), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                running.sandbox.reset_records()
                print('"ok"', flush=True)
            elif command == "counts":
                with running.sandbox.lock:
                    counts = dict(running.sandbox.request_counts)
                print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
