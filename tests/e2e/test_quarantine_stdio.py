"""Quarantine and restore as an agent meets them: `efile-mcp --sandbox DIR` over stdio, the official client.

The done-when of issue 14, on a real directory: quarantine -> the originals are gone and the same bytes
(sha256 of each file) are under the plan's quarantine folder inside the root; storage_status shows it;
restore_paths puts every file back byte-identical; a conflicting path is reported and kept; removing a
quarantine plan's folder purges it; `efile-mcp purge` removes only expired plans.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from efile_mcp.guard.quarantine import MANIFEST_SUFFIX, QUARANTINE_DIR
from efile_mcp.sandbox import seed_sample_tree

from ..conftest import audit_lines, call_ok

HOME = "/public/home/demo"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def server(root: Path, audit: Path, state: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "efile_mcp",
            "--sandbox",
            str(root),
            "--audit-log",
            str(audit),
            "--allowed-root",
            f"{HOME}/scratch",
            "--allowed-root",
            f"{HOME}/projects",
        ],
        env={"PYTHONPATH": os.pathsep.join(sys.path), "EFILE_STATE_DIR": str(state), "EFILE_CONFIRM": "token"},
    )


def digests(root: Path) -> dict[str, tuple[str, int, int]]:
    """sha256, size and mtime (ns) of every file outside the quarantine, and every link's target."""
    found = {}
    for path in sorted(root.rglob("*")):
        if QUARANTINE_DIR in path.parts or (path.is_dir() and not path.is_symlink()):
            continue
        info = path.lstat()
        content = ("->" + os.readlink(path)).encode() if path.is_symlink() else path.read_bytes()
        found[str(path.relative_to(root))] = (hashlib.sha256(content).hexdigest(), info.st_size, info.st_mtime_ns)
    return found


async def quarantine(client: Client, paths: list[str]) -> dict[str, Any]:
    plan = await call_ok(client, "remove_paths", {"paths": paths, "mode": "quarantine"})
    assert plan["confirmation_token"], plan
    return await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})


def seed(root: Path) -> None:
    env = root / "scratch/envs/old-env"  # a conda env: links inside, quarantined whole
    (env / "bin").mkdir(parents=True)
    (env / "bin/python3.11").write_bytes(os.urandom(5000))
    (env / "bin/python").symlink_to("python3.11")
    (root / "scratch/a").mkdir()
    (root / "scratch/a/stdout.log").write_text("a's own stdout.log: a base name shared with run-002's\n")


async def test_quarantine_restore_and_purge_over_stdio(tmp_path: Path) -> None:
    root = seed_sample_tree(tmp_path / "home")
    seed(root)
    before = digests(root)
    audit = tmp_path / "audit.jsonl"
    names = ["scratch/run-001", "scratch/run-002/stdout.log", "scratch/a/stdout.log", "scratch/envs/old-env",
             "projects/paper (draft)"]  # fmt: skip
    async with Client(server(root, audit, tmp_path / "state")) as client:
        assert "restore_paths" in {tool.name for tool in (await client.list_tools()).tools}
        done = await quarantine(client, [f"{HOME}/{n}" for n in names])
        plan_id = done["plan_id"]
        assert {item["status"] for item in done["items"]} == {"quarantined"}, done
        # The originals are gone; the same bytes are under the plan's folder inside each path's own root.
        for name in names:
            assert not (root / name).exists()
        for relative, (digest, size, mtime) in before.items():
            top, _, rest = relative.partition("/")
            if any(relative == n or relative.startswith(n + "/") for n in names):
                held = root / top / QUARANTINE_DIR / plan_id / rest
                content = ("->" + os.readlink(held)).encode() if held.is_symlink() else held.read_bytes()
                info = held.lstat()
                assert (hashlib.sha256(content).hexdigest(), info.st_size, info.st_mtime_ns) == (digest, size, mtime)
        assert (root / "scratch" / QUARANTINE_DIR / (plan_id + MANIFEST_SUFFIX)).is_file()

        status = await call_ok(client, "storage_status", {})
        plans = {(p["plan_id"], p["root"]): p for p in status["quarantine"]["plans"]}
        assert set(plans) == {(plan_id, f"{HOME}/scratch"), (plan_id, f"{HOME}/projects")}
        assert status["quarantine"]["total_count"] == len(names)
        assert plans[(plan_id, f"{HOME}/scratch")]["count"] == 4

        # Quarantined entries are not picked by find_paths unless the search starts inside the quarantine.
        found = await call_ok(client, "find_paths", {"path": f"{HOME}/scratch", "name": "stdout.log"})
        assert found["total_matches"] == 0
        inside = await call_ok(client, "find_paths", {"path": f"{HOME}/scratch/{QUARANTINE_DIR}", "name": "stdout.log"})
        assert inside["total_matches"] == 3

        # Something new at one original path: that one is a conflict and stays; the rest comes back.
        (root / "scratch/a/stdout.log").write_text("new since\n")
        restored = await call_ok(client, "restore_paths", {"plan_id": plan_id})
        by_path = {item["path"]: item["status"] for item in restored["items"]}
        assert by_path.pop(f"{HOME}/scratch/a/stdout.log") == "conflict"
        assert set(by_path.values()) == {"restored"}
        assert (root / "scratch/a/stdout.log").read_text() == "new since\n"
        kept = root / "scratch" / QUARANTINE_DIR / plan_id / "a/stdout.log"
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == before["scratch/a/stdout.log"][0]
        after = digests(root)
        assert after.pop("scratch/a/stdout.log") != before.pop("scratch/a/stdout.log")
        assert after == before  # every other file back, byte-identical, same size and mtime

        # Removing the plan's folder in the quarantine is a purge: permanent, whatever the mode.
        folder = f"{HOME}/scratch/{QUARANTINE_DIR}/{plan_id}"
        purged = await quarantine(client, [folder])
        assert {item["status"] for item in purged["items"]} <= {"removed", "queued"}, purged
    assert not (root / "scratch" / QUARANTINE_DIR / plan_id).exists()
    events = [(line["event"], line.get("decision")) for line in audit_lines(audit)]
    assert ("restore", "intent") in events and ("restore", "executed") in events


def purge(root: Path, state: Path, audit: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "efile_mcp",
            "--sandbox",
            str(root),
            "--audit-log",
            str(audit),
            "--allowed-root",
            f"{HOME}/scratch",
            "purge",
            *extra,
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "EFILE_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_efile_mcp_purge_removes_only_expired_plans(tmp_path: Path) -> None:
    root = seed_sample_tree(tmp_path / "home")
    audit = tmp_path / "audit.jsonl"
    async with Client(server(root, audit, tmp_path / "state")) as client:
        new = (await quarantine(client, [f"{HOME}/scratch/tmp.log"]))["plan_id"]
    # An old plan, quarantined by a server whose state store is gone: its age comes from its manifest.
    # (No server starts after it is made old: a server's start-up purge would delete it first.)
    async with Client(server(root, audit, tmp_path / "old-state")) as client:
        old = (await quarantine(client, [f"{HOME}/scratch/run-001"]))["plan_id"]
    ten_days_ago = (os.path.getmtime(audit) - 10 * 86400,) * 2
    for name in (old, old + MANIFEST_SUFFIX):
        os.utime(root / "scratch" / QUARANTINE_DIR / name, ten_days_ago)

    dry = purge(root, tmp_path / "state", audit, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert old in dry.stdout and new not in dry.stdout and "1 expired plan(s)" in dry.stdout
    assert (root / "scratch" / QUARANTINE_DIR / old).exists()

    refused = purge(root, tmp_path / "state", audit, "--read-only")
    assert refused.returncode == 2 and "read-only" in refused.stderr
    assert (root / "scratch" / QUARANTINE_DIR / old).exists()

    done = purge(root, tmp_path / "state", audit)
    assert done.returncode == 0, done.stderr
    assert f"deleted {HOME}/scratch/{QUARANTINE_DIR}/{old}" in done.stdout and "(removed)" in done.stdout
    assert not (root / "scratch" / QUARANTINE_DIR / old).exists()
    assert not (root / "scratch" / QUARANTINE_DIR / (old + MANIFEST_SUFFIX)).exists()
    assert (root / "scratch" / QUARANTINE_DIR / new / "tmp.log").exists()
    expired = [line for line in audit_lines(audit) if line["event"] == "expired"]
    assert [line["decision"] for line in expired] == ["intent", "executed"]
    assert expired[0]["plans"][0]["plan_id"] == old
