"""`efile-mcp demo`, the README's first command: a scripted agent session over stdio against the embedded
sandbox, from an over-quota home to a clean one."""

from __future__ import annotations

import re

from ..conftest import run_cli


def test_the_demo_runs_end_to_end_and_tells_the_story() -> None:
    proc = run_cli("demo", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "protocol 2025-11-25" in out
    # The headline job: the home starts over quota and ends below it, in binary units labelled as such.
    quotas = re.findall(r"quota /public/home/demo: (\S+ \S+) of (\S+ \S+) \(([\d.]+)%\)(  OVER QUOTA)?", out)
    assert len(quotas) == 2, out
    (before_used, limit, before_pct, over), (after_used, after_limit, after_pct, after_over) = quotas
    assert before_used != after_used
    assert limit == after_limit == "52.4 KiB" and over and not after_over
    assert float(before_pct) > 100 > float(after_pct)
    assert "quota unknown" not in out and "quota is unknown" not in out
    # See the tree, find what is big and old, remove it by selection, by token alone.
    assert "56.4 KiB   300 files  directory /public/home/demo/scratch/big-run" in out
    assert re.search(r"\d+ matches( so far \(next_cursor reads on\))?, [\d.]+ (B|KiB)", out)
    assert "1 would remove, 3 refused" in out
    assert "dry run of the selection: 300 would remove, 56.4 KiB in 300 files" in out
    assert "this select differs from the one the dry run expanded" in out
    # Below the quota takes a permanent deletion (quarantined data still counts), which the form says.
    assert "the agent asks for mode delete" in out
    # The form the person reads uses the same units as everything else.
    assert "permanently delete 300 files, 56.4 KiB" in out and "newest changed 45 days ago" in out
    assert "person ▸ accepts" in out
    assert "executed: 300 removed" in out and "tasks: 300 complete; all ended: True" in out
    assert re.search(r"already (used|executed)", out)  # the replayed token
    assert "scratch now holds 1.3 KiB in 8 files: run-001, run-002, tmp.log" in out
    assert not re.search(r"\d (KB|MB|GB)\b", out)  # no decimal-looking labels anywhere
    # The audit log: every record says something (an intent has no decision: not "None").
    assert "audit log: 6 lines" in out
    assert "None" not in out.split("audit log:")[1]
    assert re.search(r"intent     about to send 300 paths, confirmed by \w+", out)
    assert "Traceback" not in proc.stderr
