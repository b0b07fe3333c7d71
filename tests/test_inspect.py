"""What the dry run and the execution's re-check see of the real objects: look-ups that stop at what is
missing, and a folder fingerprint that covers every name in its tree."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client

from efile_mcp.client import EfileApi, EfileTransport, RetryPolicy, StaticToken
from efile_mcp.client.walk import Listings, TreeWalk, WalkLimits
from efile_mcp.guard.inspect import Inspector
from efile_mcp.guard.paths import PathPolicy
from efile_mcp.sandbox import RunningSandbox

from .conftest import call_ok

FAST = RetryPolicy(attempts=4, budget=5.0, base_delay=0.01, max_delay=0.05)


@pytest.fixture
async def api(sandbox: RunningSandbox) -> AsyncIterator[EfileApi]:
    transport = EfileTransport(sandbox.base_url, StaticToken(sandbox.token), retry=FAST, concurrency=8)
    yield EfileApi(transport)
    await transport.aclose()


def inspector(api: EfileApi, sandbox: RunningSandbox) -> Inspector:
    policy = PathPolicy([f"{sandbox.home}/scratch"])
    return Inspector(Listings(api), policy, WalkLimits.starting_now(100_000, 30))


async def test_thirty_deep_missing_paths_take_a_listing_per_named_folder_not_per_component(
    api: EfileApi, sandbox: RunningSandbox
) -> None:
    # ~2 KB each: 180 components below a first one that does not exist (or, for some, below a file).
    deep = "/".join(f"level{i:03d}-x" for i in range(180))
    paths = [f"{sandbox.home}/scratch/gone-{n:02d}/{deep}" for n in range(25)]
    paths += [f"{sandbox.home}/scratch/tmp.log/{deep}-{n}" for n in range(5)]
    assert all(len(p.encode()) > 1_900 for p in paths)
    sandbox.sandbox.request_counts.clear()
    found = await inspector(api, sandbox).check(paths, walk_folders=True)
    assert set(found.missing) == set(paths) and not found.seen and not found.refused
    assert "gone-00" in found.missing[paths[0]] and "tmp.log" in found.missing[paths[-1]]
    assert sandbox.sandbox.request_counts["file/list"] <= 100  # was 30 x 180: one per component


async def test_a_folder_fingerprint_sees_names_swapped_under_the_same_sizes_and_times(
    api: EfileApi, sandbox: RunningSandbox
) -> None:
    folder = f"{sandbox.home}/scratch/run-001"
    before = (await inspector(api, sandbox).check([folder], walk_folders=True)).seen[folder]
    swap_names_keeping_sizes_and_times(sandbox.root / "scratch" / "run-001")
    after = (await inspector(api, sandbox).check([folder], walk_folders=True)).seen[folder]
    same = ("kind", "size", "mtime", "listed_size", "file_count", "newest")
    assert [getattr(after, f) for f in same] == [getattr(before, f) for f in same]
    assert before.fingerprint and after.fingerprint and after.fingerprint != before.fingerprint
    again = (await inspector(api, sandbox).check([folder], walk_folders=True)).seen[folder]
    assert again.fingerprint == after.fingerprint  # the same tree, the same fingerprint, whatever the page order


def swap_names_keeping_sizes_and_times(folder: Path) -> None:
    """What `rsync -a` or `tar x` can leave: a file renamed (another name, same size and time), and the folders'
    own modification times put back as they were."""
    checkpoints = folder / "checkpoints"
    times = {p: (p.stat().st_atime, p.stat().st_mtime) for p in (folder, checkpoints)}
    os.rename(checkpoints / "ckpt-0001.pt", checkpoints / "ckpt-0001.pt.never-previewed")
    for path, (atime, mtime) in times.items():
        os.utime(path, (atime, mtime))


async def test_execution_refuses_a_folder_whose_contents_were_swapped_after_the_dry_run(
    client: Client, sandbox: RunningSandbox
) -> None:
    folder = f"{sandbox.home}/scratch/run-001"
    plan = await call_ok(client, "remove_paths", {"paths": [folder]})
    assert plan["confirmation_token"]
    swap_names_keeping_sizes_and_times(sandbox.root / "scratch" / "run-001")
    done = await call_ok(
        client, "remove_paths", {"paths": [folder], "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    items = done.get("items") or []
    assert [i["status"] for i in items if i["path"] == folder] == ["changed"], done
    assert (sandbox.root / "scratch" / "run-001" / "checkpoints" / "ckpt-0001.pt.never-previewed").exists()


async def test_a_folder_too_big_for_one_call_is_read_on_by_the_next_from_where_it_stopped(
    api: EfileApi, sandbox: RunningSandbox
) -> None:
    folder = f"{sandbox.home}/scratch/big-run"
    whole = (await inspector(api, sandbox).check([folder], walk_folders=True)).seen[folder]
    policy = PathPolicy([f"{sandbox.home}/scratch"])
    resume: dict[str, TreeWalk] = {}
    calls = read = 0
    while True:
        check = Inspector(Listings(api), policy, WalkLimits.starting_now(80, 30), resume=resume)
        found = await check.check([folder], walk_folders=True)
        calls += 1
        read += found.entries_read
        if folder in found.seen:
            break
        assert "could not be read whole" in found.refused[folder] and calls < 10
        # What the removal keeps between calls: the walk's state, through JSON (the state store's save_walk).
        resume = {p: TreeWalk.from_json(json.loads(json.dumps(w.to_json()))) for p, w in found.unfinished.items()}
    assert calls == 4 and read == 303  # 3 shards of 100 and the folder's own 3 entries, each read once
    assert found.seen[folder] == whole


async def test_execution_by_select_lists_each_folder_once(client: Client, sandbox: RunningSandbox) -> None:
    select = {"path": f"{sandbox.home}/scratch/big-run", "name": "*.dat", "type": "file"}
    plan = await call_ok(client, "remove_paths", {"select": select, "mode": "delete"})
    assert plan["summary"]["would_remove"] == 300
    sandbox.sandbox.request_counts.clear()
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert done["summary"]["removed"] + done["summary"].get("queued", 0) == 300
    # big-run and its 3 shards, each read whole once by the re-check, plus the look-up of big-run in scratch;
    # counting what now matches and was not previewed reads the same folders from that call's listings.
    assert sandbox.sandbox.request_counts["file/list"] <= 5
