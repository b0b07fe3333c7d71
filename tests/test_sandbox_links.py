"""The sandbox resolves paths through symbolic links like the real storage, but never out of DIR.

A link whose target stays inside DIR is followed on the way (deleting `a/link/x` deletes `x` in the
target); any resolution that leaves DIR is refused with 911030; the last component of a path to
delete is never followed; and a folder swapped for a symlink while a deletion runs is not walked.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx2
import pytest

from efile_mcp.models.wire import FileOperTask
from efile_mcp.sandbox import RunningSandbox

from .test_sandbox import anyio_backend, api, list_dir, names, remove, vpath, wait_for

__all__ = ["anyio_backend", "api"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to DIR, never to be touched: `d00..d19`, 20 files each."""
    folder = tmp_path / "outside"
    for d in range(20):
        (folder / f"d{d:02d}").mkdir(parents=True)
        for f in range(20):
            (folder / f"d{d:02d}" / f"f{f:02d}").write_text(f"outside {d} {f}\n")
    return folder


# -- following links inside DIR -------------------------------------------------------------------


async def test_a_link_inside_dir_is_followed_like_a_posix_path(
    sandbox: RunningSandbox, api: httpx2.AsyncClient
) -> None:
    os.symlink("scratch/run-001", sandbox.root / "latest")  # relative
    os.symlink(sandbox.root / "projects", sandbox.root / "scratch" / "proj")  # absolute, into DIR
    os.symlink("../run-002", sandbox.root / "scratch" / "run-001" / "sibling")  # relative, with ..

    assert "stdout.log" in names(await list_dir(api, vpath(sandbox, "latest")))
    assert names(await list_dir(api, vpath(sandbox, "scratch/proj"))) == ["paper (draft)"]
    assert "slurm-123456.out" in names(await list_dir(api, vpath(sandbox, "latest/sibling")))
    listed = await list_dir(api, vpath(sandbox, "latest"))
    # Paths stay as the client spelled them, as on the storage.
    assert listed["data"]["path"] == vpath(sandbox, "latest")
    assert vpath(sandbox, "latest/stdout.log") in [e["path"] for e in listed["data"]["fileList"]]

    body = await remove(api, vpath(sandbox, "latest/stdout.log"), vpath(sandbox, "latest/sibling/slurm-123456.out"))
    assert body["data"]["execResult"] == "syncExecSuccess"
    assert not (sandbox.root / "scratch" / "run-001" / "stdout.log").exists()
    assert not (sandbox.root / "scratch" / "run-002" / "slurm-123456.out").exists()
    assert (sandbox.root / "scratch" / "run-002" / "stdout.log").exists()


async def test_the_last_component_is_never_followed(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    os.symlink("scratch/run-001", sandbox.root / "latest")
    body = await remove(api, vpath(sandbox, "latest"))
    assert body["data"]["execResult"] == "syncExecSuccess"
    assert body["data"]["fileOperTasks"][0]["totalNum"] == 1  # the link, not the 7 entries behind it
    assert not os.path.lexists(sandbox.root / "latest")
    assert len(list((sandbox.root / "scratch" / "run-001").rglob("*"))) == 6


def _chain(root: Path, out: Path) -> None:
    os.symlink(out, root / "hop")
    os.symlink("hop", root / "escape")


ESCAPES: dict[str, Callable[[Path, Path], None]] = {
    "absolute": lambda root, out: os.symlink(out, root / "escape"),
    "relative": lambda root, out: os.symlink(os.path.relpath(out, root), root / "escape"),  # ../outside
    "climbing": lambda root, out: os.symlink("scratch/../../outside", root / "escape"),  # leaves on the way
    "chain": _chain,
}


@pytest.mark.parametrize("make_link", ESCAPES.values(), ids=ESCAPES.keys())
async def test_a_resolution_leaving_dir_is_refused_and_touches_nothing(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, outside: Path, make_link: Callable[[Path, Path], None]
) -> None:
    make_link(sandbox.root, outside)
    before = snapshot(outside)
    assert (await list_dir(api, vpath(sandbox, "escape")))["code"] == "911030"
    assert (await list_dir(api, vpath(sandbox, "escape/d00")))["code"] == "911030"
    assert (await remove(api, vpath(sandbox, "escape/d00")))["code"] == "911030"
    assert (await remove(api, vpath(sandbox, "escape/d00/f00")))["code"] == "911030"
    assert snapshot(outside) == before
    assert sandbox.sandbox.deleted_paths == []


async def test_link_loops_end_in_an_answer(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    os.symlink("loop-b", sandbox.root / "loop-a")
    os.symlink("loop-a", sandbox.root / "loop-b")
    os.symlink(".", sandbox.root / "self")
    with anyio.fail_after(5):
        assert (await list_dir(api, vpath(sandbox, "loop-a")))["code"] == "911030"
        assert (await remove(api, vpath(sandbox, "loop-a/x")))["code"] == "911030"
        # A link to its own folder is followed, however often (each hop is bounded, the walk is not endless).
        assert names(await list_dir(api, vpath(sandbox, "self/self/self/scratch"))) == names(
            await list_dir(api, vpath(sandbox, "scratch"))
        )


async def test_paths_through_files_and_links_to_files(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    os.symlink("notes.txt", sandbox.root / "notes-link")
    os.symlink("missing", sandbox.root / "dangling")
    assert (await list_dir(api, vpath(sandbox, "notes.txt/x")))["code"] == "911020"
    assert (await remove(api, vpath(sandbox, "notes.txt/x")))["code"] == "911020"
    assert (await list_dir(api, vpath(sandbox, "notes.txt")))["code"] == "911022"
    assert (await list_dir(api, vpath(sandbox, "notes-link")))["code"] == "911022"
    assert (await list_dir(api, vpath(sandbox, "dangling")))["code"] == "911020"
    # A dangling link is an entry like any other: it can be deleted.
    assert (await remove(api, vpath(sandbox, "dangling")))["data"]["execResult"] == "syncExecSuccess"
    assert not os.path.lexists(sandbox.root / "dangling") and (sandbox.root / "notes.txt").exists()


@pytest.mark.parametrize("sandbox", [{"inline_max_entries": 2}], indirect=True)
async def test_a_queued_deletion_unlinks_links_inside_the_folder(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, outside: Path
) -> None:
    run = sandbox.root / "scratch" / "run-001"
    os.symlink(outside, run / "to-outside")
    os.symlink(outside / "d00", run / "checkpoints" / "to-d00")
    before = snapshot(outside)
    body = await remove(api, vpath(sandbox, "scratch/run-001"))
    assert body["data"]["execResult"] == "asyncSubmitSuccess"
    task = await wait_for(api, body["data"]["fileOperTasks"][0]["taskId"], {"complete", "fail", "cancel"})
    assert task["status"] == "complete" and task["processedNum"] == task["totalNum"] == 9
    assert not os.path.lexists(run)
    assert snapshot(outside) == before


# -- the race -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sandbox", [{"task_step_delay": 0.0001}], indirect=True)
async def test_a_folder_swapped_for_a_symlink_during_a_queued_deletion_is_not_followed(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, outside: Path
) -> None:
    """While the worker deletes inside big/sub, `sub` is swapped for a link to a folder outside DIR
    holding the same names: the rest of the deletion must not reach through the link."""
    sub = sandbox.root / "big" / "sub"
    for d in range(20):
        (sub / f"d{d:02d}").mkdir(parents=True)
        for f in range(20):
            (sub / f"d{d:02d}" / f"f{f:02d}").write_text("inside\n")
    before = snapshot(outside)
    swapped = threading.Event()

    def swap() -> None:
        os.rename(sub, sandbox.root / "moved-away")
        os.symlink(outside, sub)
        swapped.set()

    def hook(task: FileOperTask | None) -> None:
        # Once the worker has finished one of sub's folders it is inside sub, with others to go.
        if swapped.is_set() or not sub.is_dir() or sub.is_symlink():
            return
        remaining = sum(1 for child in sub.iterdir() if child.name.startswith("d"))
        if 2 < remaining < 20:
            swapper = threading.Thread(target=swap, name="symlink-swapper")
            swapper.start()
            swapper.join(10)  # the worker waits here: the swap lands between two of its entries

    sandbox.sandbox.worker_step_hook = hook
    body = await remove(api, vpath(sandbox, "big"))
    assert body["data"]["execResult"] == "asyncSubmitSuccess"
    task = await wait_for(api, body["data"]["fileOperTasks"][0]["taskId"], {"complete", "fail", "cancel"}, timeout=30)

    assert swapped.is_set(), "the swap never happened: the test proved nothing"
    assert snapshot(outside) == before, "files outside DIR were deleted"
    # What the worker could not delete any more is reported, not silently dropped.
    assert task["status"] in ("complete", "fail")
    assert os.path.islink(sub) or not os.path.lexists(sub)
