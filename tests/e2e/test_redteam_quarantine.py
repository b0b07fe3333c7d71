"""Red team: the quarantine attacked as an agent (or something with write access to the storage) would.

Each test is one attempt to get data moved out of its allowed root, restored over something, restored into
a protected folder or outside a root, or permanently removed without the confirmation a permanent removal
needs. Each asserts the safe outcome. A break found is marked `xfail(strict=True, reason="BREAK: ...")`
until it is fixed, so the suite stays green and the break stays visible.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from efile_mcp.guard.ports import Decision
from efile_mcp.guard.quarantine import MANIFEST_SUFFIX, QUARANTINE_DIR
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server, review_site_of
from efile_mcp.settings import Settings

from ..conftest import HeldRequest, audit_lines, call_error, call_ok, wait_for_event
from ..test_quarantine import DAY, Rig, make_rig

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def rig(sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Rig]:
    made = make_rig(sandbox, tmp_path)
    yield made
    await made.transport.aclose()


def everything_below(root: Path) -> dict[str, tuple[str, int]]:
    """Every entry below `root` (quarantine included): kind or link target, and size."""
    found: dict[str, tuple[str, int]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        kind = "->" + os.readlink(path) if path.is_symlink() else ("dir" if path.is_dir() else "file")
        found[str(path.relative_to(root))] = (kind, 0 if path.is_dir() else info.st_size)
    return found


@pytest.fixture
async def agent(make_settings: Callable[..., Settings]) -> AsyncIterator[Client]:
    """An agent's client in quarantine mode; no form, no browser: the token alone (EFILE_CONFIRM=auto)."""
    server = build_server(make_settings(remove_mode="quarantine", review_browser="never", confirm_timeout=0.2))
    async with Client(server, mode="legacy") as connected:
        yield connected


async def quarantine_via_tools(client: Client, paths: list[str]) -> dict[str, Any]:
    plan = await call_ok(client, "remove_paths", {"paths": paths, "mode": "quarantine"})
    assert plan["confirmation_token"], plan
    await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    return plan


# ---------------------------------------------------------------------------- moving out of a root


async def test_dot_dot_paths_never_reach_a_move(agent: Client, sandbox: RunningSandbox) -> None:
    home, root = sandbox.home, sandbox.root
    before = everything_below(root)
    sandbox.sandbox.reset_records()
    for sneaky in (
        f"{home}/scratch/../projects/paper (draft)",
        f"{home}/scratch/run-001/../../projects",
        f"{home}/scratch/./../数据",
        f"{home}/scratch/run-001/..",
    ):
        result = await agent.call_tool("remove_paths", {"paths": [sneaky], "mode": "quarantine"})
        structured = result.structured_content or {}
        assert result.is_error or not structured.get("confirmation_token"), (sneaky, structured)
    assert everything_below(root) == before
    assert sandbox.sandbox.moves == []


async def test_a_link_on_the_way_out_of_the_root_is_refused(agent: Client, sandbox: RunningSandbox) -> None:
    home, root = sandbox.home, sandbox.root
    (root / "scratch/way-out").symlink_to(root / "projects")
    before = everything_below(root)
    sandbox.sandbox.reset_records()
    result = await agent.call_tool(
        "remove_paths", {"paths": [f"{home}/scratch/way-out/paper (draft)"], "mode": "quarantine"}
    )
    assert result.is_error or not (result.structured_content or {}).get("confirmation_token")
    # The link itself is refused too (links are never removed): nothing it leads to can move.
    itself = await call_ok(agent, "remove_paths", {"paths": [f"{home}/scratch/way-out"], "mode": "quarantine"})
    assert not itself.get("confirmation_token"), itself
    assert everything_below(root) == before
    assert sandbox.sandbox.moves == []


async def test_a_root_that_is_a_prefix_of_another_keeps_its_quarantine_to_itself(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox
) -> None:
    home, root = sandbox.home, sandbox.root
    (root / "scratch-old/job").mkdir(parents=True)
    (root / "scratch-old/job/out.txt").write_text("old\n")
    settings = make_settings(
        remove_mode="quarantine",
        review_browser="never",
        allowed_roots=(f"{home}/scratch", f"{home}/scratch-old"),
    )
    async with Client(build_server(settings), mode="legacy") as client:
        plan = await quarantine_via_tools(client, [f"{home}/scratch-old/job"])
    assert (root / "scratch-old" / QUARANTINE_DIR / plan["plan_id"] / "job/out.txt").read_text() == "old\n"
    assert not (root / "scratch" / QUARANTINE_DIR).exists(), "nothing crossed into the other root"


async def test_a_folder_named_like_the_quarantine_elsewhere_is_not_a_purge(
    agent: Client, sandbox: RunningSandbox
) -> None:
    """Only the exact component `.efile-quarantine` is the quarantine: a look-alike is quarantined as usual."""
    home, root = sandbox.home, sandbox.root
    (root / "scratch/.efile-quarantine-old").mkdir()
    (root / "scratch/.efile-quarantine-old/x").write_text("x\n")
    plan = await call_ok(agent, "remove_paths", {"paths": [f"{home}/scratch/.efile-quarantine-old"]})
    assert "Mode quarantine" in plan["next_step"], plan["next_step"]


# ---------------------------------------------------------------------------- commas


async def test_a_comma_name_is_refused_and_its_look_alikes_stay(agent: Client, sandbox: RunningSandbox) -> None:
    home, root = sandbox.home, sandbox.root
    (root / "scratch/a,tmp.log").write_text("comma\n")
    (root / "scratch/a").mkdir()
    before = everything_below(root)
    sandbox.sandbox.reset_records()
    plan = await call_ok(agent, "remove_paths", {"paths": [f"{home}/scratch/a,tmp.log"], "mode": "quarantine"})
    assert not plan.get("confirmation_token")
    assert "comma" in json.dumps(plan)
    # Named beside a plain path: the plain one goes, the comma one and the names a split would make stay.
    plan = await quarantine_via_tools(agent, [f"{home}/scratch/a,tmp.log", f"{home}/scratch/run-002"])
    assert (root / "scratch/a,tmp.log").read_text() == "comma\n"
    assert (root / "scratch/a").is_dir() and (root / "scratch/tmp.log").exists()
    assert all("," not in move.source for move in sandbox.sandbox.moves)
    assert not (root / "scratch/run-002").exists()
    assert set(everything_below(root)) - set(before) <= {
        k for k in everything_below(root) if k.startswith(f"scratch/{QUARANTINE_DIR}")
    }


async def test_a_restore_plan_id_with_separators_or_dots_is_refused(agent: Client, sandbox: RunningSandbox) -> None:
    home, root = sandbox.home, sandbox.root
    plan = await quarantine_via_tools(agent, [f"{home}/scratch/run-001"])
    before, moves = everything_below(root), len(sandbox.sandbox.moves)
    for plan_id in (
        "..",
        "../scratch",
        f"{plan['plan_id']}/run-001",
        f"{plan['plan_id']}/..",
        QUARANTINE_DIR,
        f"{plan['plan_id']},{plan['plan_id']}",
        ".",
        "",
        "a" * 65,
    ):
        text = await call_error(agent, "restore_paths", {"plan_id": plan_id})
        assert "Traceback" not in text
    assert everything_below(root) == before
    assert len(sandbox.sandbox.moves) == moves


async def test_restore_paths_out_of_the_roots_or_with_dot_dot_move_nothing(
    agent: Client, sandbox: RunningSandbox
) -> None:
    home, root = sandbox.home, sandbox.root
    plan = await quarantine_via_tools(agent, [f"{home}/scratch/run-001"])
    # Planted where a '..' path's mirror would resolve (the agent can write inside the quarantine).
    (root / f"scratch/{QUARANTINE_DIR}/projects/run-001").mkdir(parents=True)
    before, moves = everything_below(root), len(sandbox.sandbox.moves)
    result = await agent.call_tool(
        "restore_paths", {"plan_id": plan["plan_id"], "paths": ["/etc/passwd", f"{home}/notes.txt"]}
    )
    assert not result.is_error and (result.structured_content or {})["summary"]["restored"] == 0
    result = await agent.call_tool(
        "restore_paths", {"plan_id": plan["plan_id"], "paths": [f"{home}/scratch/x/../../projects/run-001"]}
    )
    # Refused whole, before anything is listed or moved: the guard does not rely on the storage resolving '..'.
    assert result.is_error and "Traceback" not in text_of(result), text_of(result)
    assert everything_below(root) == before and len(sandbox.sandbox.moves) == moves


# ---------------------------------------------------------------------------- restore


async def test_restore_never_overwrites_a_file_or_merges_into_a_new_folder(rig: Rig) -> None:
    seen = await rig.seen("scratch/tmp.log", "scratch/run-002")
    await rig.quarantine.send("planrt1", seen)
    (rig.root / "scratch/tmp.log").write_text("new file\n")
    (rig.root / "scratch/run-002").mkdir()
    (rig.root / "scratch/run-002/new.txt").write_text("new folder\n")
    result = await rig.quarantine.restore("planrt1")
    assert result.summary.conflict == 2 and result.summary.restored == 0, result
    assert (rig.root / "scratch/tmp.log").read_text() == "new file\n"
    assert [p.name for p in (rig.root / "scratch/run-002").iterdir()] == ["new.txt"]


async def test_an_altered_manifest_does_not_redirect_a_restore(rig: Rig) -> None:
    """The agent can write into the quarantine folder: the manifest it edits must not choose where data goes."""
    seen = await rig.seen("scratch/run-001")
    await rig.quarantine.send("planrt2", seen)
    manifest_path = rig.root / "scratch" / QUARANTINE_DIR / ("planrt2" + MANIFEST_SUFFIX)
    manifest = json.loads(manifest_path.read_text())
    for name in manifest["parts"]:  # the entries are in the manifest's parts, files beside it
        part_path = manifest_path.parent / name
        part = json.loads(part_path.read_text())
        for entry in part["entries"]:
            entry["path"] = rig.v("projects/run-001")
            entry["quarantined_as"] = rig.v("projects/run-001")
        part["root"] = rig.v("projects")
        part_path.write_text(json.dumps(part))
    manifest["root"] = rig.v("projects")
    manifest_path.write_text(json.dumps(manifest))
    result = await rig.quarantine.restore("planrt2")
    assert result.summary.restored == 1
    assert (rig.root / "scratch/run-001").is_dir()
    assert not (rig.root / "projects/run-001").exists()


async def test_an_altered_manifest_without_the_state_store_does_not_redirect_either(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    writer = make_rig(sandbox, tmp_path / "one")
    await writer.quarantine.send("planrt3", await writer.seen("scratch/run-001"))
    await writer.transport.aclose()
    manifest_path = sandbox.root / "scratch" / QUARANTINE_DIR / ("planrt3" + MANIFEST_SUFFIX)
    manifest = json.loads(manifest_path.read_text())
    part_path = manifest_path.parent / manifest["parts"][0]  # the entries are in the manifest's parts
    part = json.loads(part_path.read_text())
    part["entries"][0]["path"] = "/etc/run-001"
    part_path.write_text(json.dumps(part))
    (tmp_path / "two").mkdir()
    reader = make_rig(sandbox, tmp_path / "two", store=False)
    try:
        result = await reader.quarantine.restore("planrt3")
    finally:
        await reader.transport.aclose()
    assert result.summary.restored == 1 and (sandbox.root / "scratch/run-001").is_dir()


async def test_a_link_put_on_the_way_before_a_restore_is_not_followed(rig: Rig) -> None:
    (rig.root / "scratch/deep/er").mkdir(parents=True)
    (rig.root / "scratch/deep/er/data.bin").write_bytes(b"12345")
    await rig.quarantine.send("planrt4", await rig.seen("scratch/deep/er/data.bin"))
    # The parent is replaced by a link into another root.
    (rig.root / "scratch/deep/er").rmdir()
    (rig.root / "scratch/deep/er").symlink_to(rig.root / "projects")
    before = everything_below(rig.root / "projects")
    result = await rig.quarantine.restore("planrt4")
    assert result.summary.restored == 0 and result.summary.failed == 1, result
    assert everything_below(rig.root / "projects") == before
    assert (rig.root / "scratch" / QUARANTINE_DIR / "planrt4/deep/er/data.bin").read_bytes() == b"12345"


async def test_restore_does_not_write_into_a_protected_folder(rig: Rig) -> None:
    """Something put into a plan's quarantine folder (the agent can write there) and restored by naming it must
    not land inside a protected folder (.ssh) of the root: restore_paths is not confirmed by anyone."""
    (rig.root / "scratch/.ssh").mkdir()
    (rig.root / "scratch/.ssh/known_hosts").write_text("kept\n")
    await rig.quarantine.send("planrt5", await rig.seen("scratch/tmp.log"))
    planted = rig.root / "scratch" / QUARANTINE_DIR / "planrt5/.ssh"
    planted.mkdir()
    (planted / "authorized_keys").write_text("ssh-ed25519 AAAA attacker\n")
    result = await rig.quarantine.restore("planrt5", [rig.v("scratch/.ssh/authorized_keys")])
    assert result.summary.restored == 0, result
    assert not (rig.root / "scratch/.ssh/authorized_keys").exists()
    # Nor by restoring the whole plan without a state store record (the layout then names what is there).
    result = await rig.quarantine.restore("planrt5")
    assert not (rig.root / "scratch/.ssh/authorized_keys").exists()


async def test_restore_of_an_unrecorded_entry_cannot_take_a_protected_name(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Without the state store, a whole-plan restore reads the plan folder's top entries: a planted `.ssh`
    there must not be moved to `<root>/.ssh`."""
    writer = make_rig(sandbox, tmp_path / "one")
    await writer.quarantine.send("planrt6", await writer.seen("scratch/tmp.log"))
    await writer.transport.aclose()
    planted = sandbox.root / "scratch" / QUARANTINE_DIR / "planrt6/.ssh"
    planted.mkdir()
    (planted / "authorized_keys").write_text("ssh-ed25519 AAAA attacker\n")
    (tmp_path / "two").mkdir()
    reader = make_rig(sandbox, tmp_path / "two", store=False)
    try:
        await reader.quarantine.restore("planrt6")
    finally:
        await reader.transport.aclose()
    assert not (sandbox.root / "scratch/.ssh").exists()


# ---------------------------------------------------------------------------- purge


async def test_purge_deletes_only_expired_plans_and_nothing_outside_the_quarantine(rig: Rig) -> None:
    await rig.quarantine.send("planold", await rig.seen("scratch/run-001"))
    rig.clock.advance(8 * DAY)
    await rig.quarantine.send("plannew", await rig.seen("scratch/run-002"))
    quarantine = rig.root / "scratch" / QUARANTINE_DIR
    # Things in the quarantine folder that are not plans: a link out of it, a file.
    (quarantine / "escape").symlink_to(rig.root / "projects")
    os.utime(quarantine / "escape", (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    outside = everything_below(rig.root / "projects")
    rig.sandbox.sandbox.reset_records()
    report = await rig.quarantine.purge(dry_run=False)
    assert [p.plan_id for p in report.expired] == ["planold"], report.lines()
    sent = rig.sandbox.sandbox.received_remove_paths
    assert not any("escape" in path for path in sent), "a link in the quarantine is not a plan: never sent"
    assert all(f"/{QUARANTINE_DIR}/planold" in path for path in sent), sent
    assert not (quarantine / "planold").exists()
    assert (quarantine / "plannew/run-002").is_dir(), "a plan that has not expired is kept"
    assert everything_below(rig.root / "projects") == outside, "nothing outside the quarantine is touched"
    assert (rig.root / "scratch/tmp.log").exists()


async def test_purge_of_a_quarantined_folder_with_links_inside_needs_links_inside_remove(rig: Rig) -> None:
    """A conda env can be quarantined whole (a move never follows links); its permanent removal stays refused
    unless EFILE_LINKS_INSIDE=remove, the expiry purge included: a storage that follows links when removing
    would delete what they point to."""
    env = rig.root / "scratch/envs/old-env"
    (env / "bin").mkdir(parents=True)
    (env / "bin/python3.11").write_bytes(b"\x7fELF")
    (env / "lib").symlink_to(rig.root / "projects")
    await rig.quarantine.send("planlinks", await rig.seen("scratch/envs/old-env"))
    rig.clock.advance(8 * DAY)
    rig.sandbox.sandbox.reset_records()
    report = await rig.quarantine.purge(dry_run=False)
    held = rig.root / "scratch" / QUARANTINE_DIR / "planlinks"
    assert held.is_dir(), f"purged without EFILE_LINKS_INSIDE=remove: {report.lines()}"


async def test_remove_paths_on_a_quarantine_is_a_permanent_confirmed_delete_whatever_the_mode(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox, audit_path: Path
) -> None:
    home, root = sandbox.home, sandbox.root
    settings = make_settings(remove_mode="quarantine", review_browser="never", confirm="human", confirm_timeout=0.2)
    server = build_server(settings)
    async with Client(server, mode="legacy") as client:
        first = await call_ok(client, "remove_paths", {"paths": [f"{home}/scratch/run-001"]})
        # human mode and no channel: the terminal approves the quarantine (as a person would).
        store = server_store(server)
        await store.decide(first["plan_id"], 2e9, Decision("approved", "terminal"))
        await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": first["confirmation_token"]})
        held = f"{home}/scratch/{QUARANTINE_DIR}/{first['plan_id']}"
        assert (root / f"scratch/{QUARANTINE_DIR}/{first['plan_id']}/run-001").is_dir()

        purge = await call_ok(client, "remove_paths", {"paths": [held], "mode": "quarantine"})
        assert "permanent" in purge["next_step"] and "Mode delete" in purge["next_step"], purge["next_step"]
        # Mixed with an ordinary path: the quarantine path is refused, never quarantined into itself.
        mixed = await call_ok(
            client, "remove_paths", {"paths": [held, f"{home}/scratch/run-002"], "mode": "quarantine"}
        )
        assert mixed["summary"]["refused"] == 1
        # The purge is confirmed like any removal: no person, no deletion (human mode).
        waiting = await client.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": purge["confirmation_token"]}
        )
        assert waiting.is_error
        assert (root / f"scratch/{QUARANTINE_DIR}/{first['plan_id']}/run-001").is_dir()
    executions = [line for line in audit_lines(audit_path) if line["event"] == "execution"]
    assert [e["mode"] for e in executions] == ["quarantine"]


def text_of(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def server_store(server: Any) -> Any:
    """The state store a built server decides in (as `efile-mcp approve` does)."""
    site = review_site_of(server)
    assert site is not None
    return site.store


async def test_a_quarantined_folder_with_links_inside_cannot_be_purged_by_remove_paths(
    agent: Client, sandbox: RunningSandbox
) -> None:
    home, root = sandbox.home, sandbox.root
    env = root / "scratch/envs/old-env"
    (env / "bin").mkdir(parents=True)
    (env / "bin/python").write_text("#!\n")
    (env / "lib").symlink_to(root / "projects")
    plan = await quarantine_via_tools(agent, [f"{home}/scratch/envs/old-env"])
    folder = f"{home}/scratch/{QUARANTINE_DIR}/{plan['plan_id']}"
    for target in (folder, f"{folder}/envs/old-env", f"{home}/scratch/{QUARANTINE_DIR}"):
        result = await call_ok(agent, "remove_paths", {"paths": [target]})
        assert not result.get("confirmation_token"), (target, result)
        assert "EFILE_LINKS_INSIDE" in json.dumps(result), result
    assert (root / f"scratch/{QUARANTINE_DIR}/{plan['plan_id']}/envs/old-env/lib").is_symlink()


async def test_a_selection_never_picks_what_is_in_quarantine(agent: Client, sandbox: RunningSandbox) -> None:
    home, root = sandbox.home, sandbox.root
    plan = await quarantine_via_tools(agent, [f"{home}/scratch/run-001"])
    chosen = await call_ok(
        agent, "remove_paths", {"select": {"path": f"{home}/scratch", "name": "run-*"}, "mode": "delete"}
    )
    text = json.dumps(chosen)
    assert QUARANTINE_DIR not in text, "the quarantined run-001 is not chosen again (and never deleted for good)"
    assert (root / f"scratch/{QUARANTINE_DIR}/{plan['plan_id']}/run-001").is_dir()


@pytest.mark.parametrize(
    "swapped",
    [
        "plan folder",  # fixed in 89fc88a: a prepared plan folder (or a link on the way) is checked first
        "quarantine folder",
    ],
)
async def test_a_quarantine_folder_swapped_for_a_link_does_not_carry_data_out_of_its_root(
    agent: Client, sandbox: RunningSandbox, swapped: str
) -> None:
    """The dry run answers the plan id; before the execution, something with write access makes
    `<root>/.efile-quarantine/<plan id>` (or the quarantine folder itself) a link to a folder outside the root."""
    home, root = sandbox.home, sandbox.root
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    plan = await call_ok(agent, "remove_paths", {"paths": [f"{home}/scratch/run-001"], "mode": "quarantine"})
    quarantine = root / "scratch" / QUARANTINE_DIR
    if swapped == "plan folder":
        quarantine.mkdir()
        (quarantine / plan["plan_id"]).symlink_to(elsewhere)
    else:
        quarantine.symlink_to(elsewhere)
    await agent.call_tool("remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert list(elsewhere.rglob("*")) == [], "data moved out of its allowed root through a link"


async def test_a_resumed_quarantine_is_restored_whole(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A replica quarantined part of a plan and died; the next call resumes and moves the rest. The person's
    restore_paths(plan_id) must bring back everything the plan moved, by either replica."""
    home, root = sandbox.home, sandbox.root
    before = everything_below(root)
    server = build_server(make_settings(remove_mode="quarantine", review_browser="never", confirm="human"))
    site = review_site_of(server)
    assert site is not None
    async with Client(server, mode="legacy") as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{home}/scratch/run-001", f"{home}/scratch/run-002"]})
        expires = datetime.fromisoformat(plan["expires_at"]).timestamp()
        await site.store.decide(plan["plan_id"], expires, Decision("approved", "terminal"))
        assert (await site.store.redeem(plan["plan_id"], expires, lease=0.0)).won  # the replica that dies
        dead = make_rig(sandbox, tmp_path / "dead")  # the dead replica's quarantine, on the same state store
        dead.quarantine.store, dead.quarantine.clock = site.store, time.time
        try:
            await dead.quarantine.send(plan["plan_id"], (await dead.seen("scratch/run-001", "scratch/run-002"))[:1])
        finally:
            await dead.transport.aclose()
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
        assert {i["path"]: i["status"] for i in done["items"]} == {
            f"{home}/scratch/run-001": "missing",
            f"{home}/scratch/run-002": "quarantined",
        }
        restored = await call_ok(client, "restore_paths", {"plan_id": plan["plan_id"]})
    assert restored["summary"]["restored"] == 2, restored
    after = {k: v for k, v in everything_below(root).items() if not k.startswith(f"scratch/{QUARANTINE_DIR}")}
    assert after == before, "every entry is back, and nothing of the plan is left in quarantine"
    assert not (root / f"scratch/{QUARANTINE_DIR}/{plan['plan_id']}").exists()


@pytest.mark.parametrize("mode", ["quarantine", "delete"])
async def test_a_folder_holding_another_allowed_root_is_not_removed_with_it(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox, mode: str
) -> None:
    """Roots `scratch` and `scratch/group/shared`: removing `scratch/group` would take the other root (and the
    quarantine inside it, with plans the person can still restore) along."""
    home, root = sandbox.home, sandbox.root
    (root / "scratch/group/shared/data").mkdir(parents=True)
    (root / "scratch/group/shared/data/x.bin").write_bytes(b"x" * 100)
    settings = make_settings(
        remove_mode="quarantine",
        review_browser="never",
        allowed_roots=(f"{home}/scratch", f"{home}/scratch/group/shared"),
    )
    async with Client(build_server(settings), mode="legacy") as client:
        inner = await quarantine_via_tools(client, [f"{home}/scratch/group/shared/data"])
        assert (root / f"scratch/group/shared/{QUARANTINE_DIR}/{inner['plan_id']}/data/x.bin").exists()
        outer = await call_ok(client, "remove_paths", {"paths": [f"{home}/scratch/group"], "mode": mode})
        assert not outer.get("confirmation_token"), outer
    assert (root / f"scratch/group/shared/{QUARANTINE_DIR}/{inner['plan_id']}/data/x.bin").exists()


async def test_a_planted_comma_name_is_never_sent_by_a_restore(
    agent: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    """A move takes its sources comma-separated: an entry with a comma planted in a plan's folder and restored by
    name must never be sent as a source the API would split, and the call says so (no crash, an audited outcome)."""
    home, root = sandbox.home, sandbox.root
    plan = await quarantine_via_tools(agent, [f"{home}/scratch/run-001", f"{home}/scratch/run-002"])
    planted = root / "scratch" / QUARANTINE_DIR / plan["plan_id"] / "run-001,tmp.log"
    planted.write_text("planted\n")
    moves = len(sandbox.sandbox.moves)
    result = await agent.call_tool(
        "restore_paths",
        {"plan_id": plan["plan_id"], "paths": [f"{home}/scratch/run-002", f"{home}/scratch/run-001,tmp.log"]},
    )
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert "comma" in text and "Traceback" not in text, text
    assert all("," not in move.source for move in sandbox.sandbox.moves[moves:])
    assert planted.exists() and (root / "scratch/tmp.log").exists()
    restores = [line["decision"] for line in audit_lines(audit_path) if line["event"] == "restore"]
    assert restores.count("intent") == restores.count("executed"), "every restore intent has its outcome"


async def test_a_purge_with_fewer_days_does_not_cut_the_grace_period_promised_at_quarantine(rig: Rig) -> None:
    """Quarantined by a server with EFILE_QUARANTINE_DAYS=30 (the answer and the manifest say: restorable for 30
    days); eight days later `efile-mcp purge` runs from a cron job without that setting (7 days), or another
    client's server starts with the default and purges at start-up."""
    rig.quarantine.days = 30
    await rig.quarantine.send("plan30", await rig.seen("scratch/run-001"))
    manifest = json.loads((rig.root / "scratch" / QUARANTINE_DIR / ("plan30" + MANIFEST_SUFFIX)).read_text())
    promised = datetime.fromisoformat(manifest["expires_at"]).timestamp()
    assert promised >= rig.clock() + 29 * DAY
    rig.clock.advance(8 * DAY)
    rig.quarantine.days = 7  # the other process's setting
    report = await rig.quarantine.purge(dry_run=False)
    assert report.expired == [], report.lines()
    assert (rig.root / "scratch" / QUARANTINE_DIR / "plan30/run-001").is_dir()


async def test_a_quarantine_cancelled_mid_way_then_resumed_is_restored_whole(
    make_settings: Callable[..., Settings], sandbox: RunningSandbox
) -> None:
    """The agent cancels its execution while a move is on the wire (the storage then carries it out); after the
    lease, the same token resumes the plan; restore_paths(plan_id) then brings every entry back."""
    home, root = sandbox.home, sandbox.root
    (root / "scratch/a").mkdir()
    (root / "scratch/a/x.log").write_text("x\n")
    before = everything_below(root)
    server = build_server(make_settings(remove_mode="quarantine", review_browser="never", execution_lease=1.0))
    store = server_store(server)
    held = HeldRequest("move", passed=1)  # the first move lands; the second is held on the wire
    async with Client(server, mode="legacy") as agent:
        plan = await call_ok(agent, "remove_paths", {"paths": [f"{home}/scratch/run-001", f"{home}/scratch/a/x.log"]})
        execute = {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        sandbox.sandbox.fault = held
        async with anyio.create_task_group() as group:
            group.start_soon(agent.call_tool, "remove_paths", execute)
            await wait_for_event(held.arrived, "the second move reached the storage")
            group.cancel_scope.cancel()
        await wait_for_event(held.dropped, "the cancelled move was abandoned by the server")
        sandbox.sandbox.fault = None
        with anyio.fail_after(10):  # the cancelled execution's lease runs out (nobody renews it)
            while (state := await store.plan_state(plan["plan_id"])).status == "running" and (
                state.lease_until > time.time()
            ):
                await anyio.sleep(0.05)
        resumed = await agent.call_tool("remove_paths", execute)
        assert not resumed.is_error, text_of(resumed)
        restored = await call_ok(agent, "restore_paths", {"plan_id": plan["plan_id"]})
    assert restored["summary"]["restored"] == 2, restored
    after = {k: v for k, v in everything_below(root).items() if not k.startswith(f"scratch/{QUARANTINE_DIR}")}
    assert after == before
