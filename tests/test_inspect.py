"""What the dry run and the execution's re-check see of the real objects: look-ups that stop at what is
missing, and a folder fingerprint that covers every name in its tree."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client

from efile_mcp.client import EfileApi, EfileTransport, RetryPolicy, StaticToken
from efile_mcp.client.walk import Listings, TreeWalk, WalkLimits
from efile_mcp.guard.inspect import Inspector, may_be_protected
from efile_mcp.guard.paths import DEFAULT_PROTECTED, PathPolicy
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


def link_farm(sandbox: RunningSandbox, folders: int = 40, links: int = 3) -> str:
    """A folder of `folders` sub-folders, each holding one file and `links` symbolic links to it."""
    farm = sandbox.root / "scratch" / "farm"
    for n in range(folders):
        sub = farm / f"part-{n:02d}"
        sub.mkdir(parents=True)
        (sub / "data.bin").write_bytes(b"x" * 10)
        for k in range(links):
            os.symlink("data.bin", sub / f"link-{k}")
    return f"{sandbox.home}/scratch/farm"


async def test_a_folder_refused_for_its_links_is_read_no_further_than_the_first_link(
    api: EfileApi, sandbox: RunningSandbox
) -> None:
    folder = link_farm(sandbox)
    sandbox.sandbox.request_counts.clear()
    found = await inspector(api, sandbox).check([folder], walk_folders=True)
    why = found.refused[folder]
    # The first link named, the rest counted: what was read before the walk stopped (a tree of a million
    # links keeps one path, not a million).
    assert f'it holds the symbolic link "{folder}/part-' in why and "(and at least " in why
    # Refused whatever the rest holds: of its 41 folders, no more are listed once a link is seen (the
    # requests already out, at most two per request slot, and the look-up of the folder itself).
    assert sandbox.sandbox.request_counts["file/list"] <= 20
    assert found.entries_read < 40 * 4


async def test_a_folder_of_links_to_quarantine_is_read_whole_and_seen(api: EfileApi, sandbox: RunningSandbox) -> None:
    folder = link_farm(sandbox)
    allowed = Inspector(
        Listings(api), PathPolicy([f"{sandbox.home}/scratch"]), WalkLimits.starting_now(100_000, 30), "allow"
    )
    found = await allowed.check([folder], walk_folders=True)
    seen = found.seen[folder]
    assert not found.refused and seen.file_count == 40 and seen.size == 400 and seen.fingerprint
    assert found.entries_read == 40 + 40 * 4


PROTECTED_SPELLINGS = [".ssh", ".SSH", ".ssh. .", ".Bashrc ", "\uff0e\uff53\uff53\uff48", ".gnupg..", "Secrets", "..."]


@given(
    st.lists(
        st.one_of(
            st.sampled_from(PROTECTED_SPELLINGS),
            st.text(alphabet=st.sampled_from("ab.S /hsecrt\u00e9\uff0e\uff53"), max_size=8),
        ),
        max_size=12,
    )
)
@settings(max_examples=400, deadline=None)
def test_a_page_is_looked_at_name_by_name_whenever_a_name_in_it_is_protected(names: list[str]) -> None:
    policy = PathPolicy(["/r"], DEFAULT_PROTECTED | {"secrets", "..."})
    if any(policy.is_protected_name(name) for name in names):
        assert may_be_protected(policy.protected_names)(names)


def test_a_page_of_ordinary_names_is_not_looked_at_name_by_name() -> None:
    test = may_be_protected(PathPolicy(["/r"]).protected_names)
    assert not test([f"n01440764_{n:05d}.JPEG" for n in range(1281)] + ["ssh", "x.ssh", "bashrc", ".cache"])
    assert test(["a.jpg", ".PROFILE .", "b.jpg"]) and test(["donn\u00e9es"])  # any non-ASCII name: one by one
