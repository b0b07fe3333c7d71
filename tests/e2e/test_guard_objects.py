"""The guard checks the real objects on storage, not path strings (regressions of reproduced breaks).

Each test here failed on the guard that read paths as strings: it deleted data the person never confirmed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mcp import Client

from efile_mcp.sandbox import RunningSandbox

from ..conftest import call_ok


def real(sandbox: RunningSandbox, virtual: str) -> Path:
    return sandbox.root / virtual.removeprefix(sandbox.home + "/")


async def test_a_symlink_below_the_root_cannot_lead_outside_it(client: Client, sandbox: RunningSandbox) -> None:
    """Break 1: with only ~/scratch allowed and scratch/link -> ../precious, removing
    scratch/link/data/results.csv deleted precious/data/results.csv."""
    precious = sandbox.root / "precious" / "data"
    precious.mkdir(parents=True)
    (precious / "results.csv").write_text("weeks of work\n")
    (sandbox.root / "scratch" / "link").symlink_to("../precious")
    (sandbox.root / "scratch" / "gpg").symlink_to("../.ssh")
    target = f"{sandbox.home}/scratch/link/data/results.csv"
    key = f"{sandbox.home}/scratch/gpg/authorized_keys"
    leaf = f"{sandbox.home}/scratch/link"
    plan = await call_ok(client, "remove_paths", {"paths": [target, key]})
    by_path = {item["path"]: item for item in plan["items"]}
    by_path.update({item["path"]: item for item in (await call_ok(client, "remove_paths", {"paths": [leaf]}))["items"]})
    assert {item["status"] for item in plan["items"]} == {"refused"}
    assert "symbolic link" in by_path[target]["reason"] and "scratch/link" in by_path[target]["reason"]
    assert "scratch/gpg" in by_path[key]["reason"]
    assert "symbolic link" in by_path[leaf]["reason"]
    assert "confirmation_token" not in plan
    assert (precious / "results.csv").exists()
    assert (sandbox.root / ".ssh" / "authorized_keys").exists()
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_a_file_replaced_by_a_folder_after_the_dry_run_is_not_sent(
    client: Client, sandbox: RunningSandbox
) -> None:
    """Break 2a: a confirmed "file, 10 B" was replaced by a folder of 500 entries and all of it was deleted."""
    small = f"{sandbox.home}/scratch/tmp.log"
    other = f"{sandbox.home}/scratch/run-002"
    plan = await call_ok(client, "remove_paths", {"paths": [small, other]})
    assert {i["path"]: i["type"] for i in plan["items"]} == {small: "file", other: "directory"}
    real(sandbox, small).unlink()
    folder = real(sandbox, small)
    folder.mkdir()
    for i in range(500):
        (folder / f"entry-{i}").write_text("someone's data\n")
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    by_path = {item["path"]: item for item in done["items"]}
    assert by_path[small]["status"] == "changed" and "run a new dry run" in by_path[small]["reason"].lower()
    assert "directory" in by_path[small]["reason"]
    assert by_path[other]["status"] == "removed"  # the rest of the confirmed set proceeds
    assert len(list(folder.iterdir())) == 500
    assert small not in sandbox.sandbox.received_remove_paths


async def test_a_parent_swapped_for_a_link_after_the_dry_run_is_not_followed(
    client: Client, sandbox: RunningSandbox
) -> None:
    """Break 2b: a parent swapped for a symlink after a clean dry run led outside the root."""
    target = f"{sandbox.home}/scratch/run-001/result.csv"
    plan = await call_ok(client, "remove_paths", {"paths": [target]})
    assert plan["items"][0]["status"] == "would_remove"
    outside = sandbox.root / "projects" / "keep"
    outside.mkdir()
    (outside / "result.csv").write_text("not in scratch\n")
    shutil.rmtree(real(sandbox, f"{sandbox.home}/scratch/run-001"))
    real(sandbox, f"{sandbox.home}/scratch/run-001").symlink_to(outside)
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    (item,) = done["items"]
    assert item["status"] == "changed" and "symbolic link" in item["reason"]
    assert (outside / "result.csv").exists()
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_protected_names_are_compared_folded_and_whatever_the_spelling(
    client: Client, sandbox: RunningSandbox
) -> None:
    home = sandbox.home
    for name in (".SSH", "\uff0e\uff53\uff53\uff48", ".ssh ", ".ssh."):
        (sandbox.root / "scratch" / "cache" / name).mkdir(parents=True, exist_ok=True)
    variants = [
        f"{home}/scratch/cache/.SSH",
        f"{home}/scratch/cache/\uff0e\uff53\uff53\uff48",
        f"{home}/scratch/cache/.ssh ",
        f"{home}/scratch/cache/.ssh.",
    ]
    plan = await call_ok(client, "remove_paths", {"paths": variants})
    assert {item["status"] for item in plan["items"]} == {"refused"}
    for spelling in (f"{home}/scratch/cache/.ssh/", f"{home}/scratch/cache//.ssh"):
        plan = await call_ok(client, "remove_paths", {"paths": [f"{home}/scratch/cache", spelling]})
        by_path = {item["path"]: item for item in plan["items"]}
        assert by_path[f"{home}/scratch/cache"]["status"] == "refused", spelling
        assert "protected" in by_path[f"{home}/scratch/cache"]["reason"]


async def test_an_ancestor_of_an_allowed_root_is_refused(make_settings, sandbox: RunningSandbox, era: str) -> None:  # type: ignore[no-untyped-def]
    from efile_mcp.server import build_server

    settings = make_settings(allowed_roots=(sandbox.home, f"{sandbox.home}/scratch/run-001/checkpoints"))
    async with Client(build_server(settings), mode=era) as client:
        plan = await call_ok(
            client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-001", f"{sandbox.home}/scratch"]}
        )
    assert {item["status"] for item in plan["items"]} == {"refused"}
    assert all("allowed root" in item["reason"] for item in plan["items"])


async def test_an_audit_failure_after_sending_keeps_the_per_path_answer(
    client: Client, sandbox: RunningSandbox, monkeypatch: object
) -> None:
    """What was sent is sent: the agent still learns each path's state, with a warning, not a bare error."""
    import pytest

    from efile_mcp.errors import AuditUnavailable
    from efile_mcp.guard.audit import AuditLog

    target = f"{sandbox.home}/scratch/tmp.log"
    plan = await call_ok(client, "remove_paths", {"paths": [target]})
    original = AuditLog.write

    async def failing_execution_record(self: AuditLog, event: str, **fields: object) -> None:
        if event == "execution":
            raise AuditUnavailable("cannot write the audit log: No space left on device")
        await original(self, event, **fields)

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(AuditLog, "write", failing_execution_record)
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert done["items"][0]["status"] == "removed" and not real(sandbox, target).exists()
    assert done["next_step"].startswith("WARNING: the removal was sent, but its audit record could not be written")
