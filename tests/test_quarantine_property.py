"""A property of the quarantine, over random trees and plans, against the sandbox over real HTTP:

- no entry ever leaves its allowed root (each lands in the quarantine of the innermost root holding it,
  and nothing outside the plan moves);
- quarantine then restore is the identity on the tree: the same names, kinds, sizes and mtimes of every
  file and link, the same folders, and a folder moved whole keeps its own mtime.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from efile_mcp.client import EfileApi
from efile_mcp.client.walk import Listings, WalkLimits
from efile_mcp.guard.inspect import Inspector
from efile_mcp.guard.paths import collapse
from efile_mcp.guard.quarantine import QUARANTINE_DIR, innermost_root, mirror_of
from efile_mcp.sandbox import RunningSandbox, SandboxConfig, run_sandbox_in_thread

from .test_quarantine import make_rig

ROOTS = ("scratch", "projects", "scratch/inner")
NAMES = ("a", "b", "out.log", "data")
BASE_TIME = 1_600_000_000


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    root = tmp_path_factory.mktemp("property") / "home"
    root.mkdir()
    with run_sandbox_in_thread(SandboxConfig(root=root)) as running:
        yield running


entry = st.tuples(
    st.sampled_from(ROOTS),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
    st.sampled_from(["file", "dir", "link"]),
    st.integers(min_value=0, max_value=3000),
)


def build(root: Path, entries: list[tuple[str, list[str], str, int]]) -> list[str]:
    """Make the tree; returns the relative paths made (files, folders and links), in a stable order."""
    for name in ("scratch", "projects"):
        shutil.rmtree(root / name, ignore_errors=True)
    (root / "scratch/inner").mkdir(parents=True)
    (root / "projects").mkdir()
    made: list[str] = []
    for index, (top, parts, kind, size) in enumerate(entries):
        path = root / top / Path(*parts)
        if any((p.exists() and not p.is_dir()) or p.is_symlink() for p in [*path.parents][: len(parts) - 1]):
            continue  # a file or link where a folder should be
        if path.exists() or path.is_symlink():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            path.write_bytes(bytes([index % 251]) * size)
        elif kind == "dir":
            path.mkdir()
        else:
            path.symlink_to("/etc" if size % 2 else "a")
        os.utime(path, (BASE_TIME + index, BASE_TIME + index), follow_symlinks=False)
        made.append(str(path.relative_to(root)))
    return made


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry outside the quarantines: kind, size and mtime (a folder: kind only; its mtime changes when a
    child moves out and back)."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if QUARANTINE_DIR in relative.parts:
            continue
        info = path.lstat()
        if path.is_symlink():
            found[str(relative)] = ("link:" + os.readlink(path), info.st_size, info.st_mtime_ns)
        elif path.is_dir():
            found[str(relative)] = ("dir", 0, 0)
        else:
            found[str(relative)] = ("file", info.st_size, info.st_mtime_ns)
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(entry, min_size=1, max_size=14), picks=st.lists(st.integers(0, 100), min_size=1, max_size=6))
def test_quarantine_keeps_every_entry_in_its_root_and_restore_is_the_identity(
    shared_sandbox: RunningSandbox, tmp_path: Path, entries: list[tuple[str, list[str], str, int]], picks: list[int]
) -> None:
    root = shared_sandbox.root
    made = build(root, entries)
    candidates = [m for m in made if m not in ROOTS]
    if not candidates:
        return
    chosen = list(collapse(f"{shared_sandbox.home}/{candidates[i % len(candidates)]}" for i in picks).to_send)
    before = snapshot(root)
    moved_folders = {p: (root / p.removeprefix(shared_sandbox.home + "/")).lstat().st_mtime_ns for p in chosen}

    async def run() -> None:
        rig = make_rig(shared_sandbox, tmp_path / f"rig-{len(os.listdir(tmp_path))}")
        listings = Listings(EfileApi(rig.transport), concurrency=4, keep=False)
        inspection = await Inspector(
            listings, rig.policy, WalkLimits.starting_now(100_000, 30), links_inside="allow"
        ).check(chosen, walk_folders=True)
        seen = [inspection.seen[p] for p in chosen if p in inspection.seen]
        sent = {s.path for s in seen}
        event(f"paths quarantined: {min(len(sent), 3)}{'+' if len(sent) >= 3 else ''}")
        items = await rig.quarantine.send("prop", seen)
        assert {items[p].status for p in sent} <= {"quarantined"}, items
        after = snapshot(root)
        home = shared_sandbox.home + "/"
        gone = {p for p in before if p not in after}
        expected_gone = {
            rel for rel in before if any(rel == p[len(home) :] or rel.startswith(p[len(home) :] + "/") for p in sent)
        }
        assert gone == expected_gone  # nothing outside the plan moved
        assert all(after[p] == before[p] for p in after)  # nor changed (folders compared by kind)
        for path in sent:
            held_root = innermost_root(rig.policy, path)
            assert held_root is not None
            held = root / mirror_of(held_root, "prop", path)[len(home) :]
            assert held.exists() or held.is_symlink(), f"{path} is not in the quarantine of {held_root}"
            assert held.lstat().st_mtime_ns == moved_folders[path]
        if sent:  # links named themselves are refused by the inspection: nothing to restore then
            result = await rig.quarantine.restore("prop")
            assert result.summary.restored == len(sent) and result.summary.conflict == 0, result
        await rig.transport.aclose()

    anyio.run(run)
    assert snapshot(root) == before
    for path, mtime in moved_folders.items():
        assert (root / path.removeprefix(shared_sandbox.home + "/")).lstat().st_mtime_ns == mtime
    for top in ("scratch", "projects", "scratch/inner"):
        shutil.rmtree(root / top / QUARANTINE_DIR, ignore_errors=True)
