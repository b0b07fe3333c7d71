"""file/mkdir, file/move, file/rename and file/upload of the sandbox, over real HTTP (efile-api.md section 5a).

What a quarantine relies on: a folder moves whole (its contents, its own mtime), a link moves as a
link and is never followed, `uncover` never overwrites, errors carry the documented codes, nothing
ever leaves DIR, and a move that answers late has still acted.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from efile_mcp.models.wire import FILE_MKDIR, FILE_MOVE, FILE_RENAME, FILE_UPLOAD
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.sandbox.faults import FaultPlan, FaultRule
from efile_mcp.sandbox.moves import _rename_no_replace

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(sandbox: RunningSandbox) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=sandbox.base_url, headers={"token": sandbox.token}, timeout=10) as client:
        yield client


def tree(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry below root: kind, mtime (whole seconds) and content (a link's target)."""
    found: dict[str, tuple[str, int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", int(info.st_mtime), os.readlink(path))
        elif path.is_dir():
            found[str(path.relative_to(root))] = ("dir", int(info.st_mtime), b"")
        else:
            found[str(path.relative_to(root))] = ("file", int(info.st_mtime), path.read_bytes())
    return found


async def move(api: httpx2.AsyncClient, sources: list[str], target: str, cover: str | None = None) -> dict[str, Any]:
    form = {"sourcePaths": ",".join(sources), "targetPath": target}
    if cover:
        form["cover"] = cover
    response = await api.post(FILE_MOVE, data=form)
    assert response.status_code == 200
    return response.json()


async def mkdir(api: httpx2.AsyncClient, path: str, parents: bool = False) -> dict[str, Any]:
    response = await api.post(FILE_MKDIR, params={"path": path, "createParents": str(parents).lower()})
    assert response.status_code == 200
    return response.json()


async def rename(api: httpx2.AsyncClient, path: str, new_name: str) -> dict[str, Any]:
    response = await api.post(FILE_RENAME, data={"fileAbsolutePath": path, "newName": new_name})
    assert response.status_code == 200
    return response.json()


# -- mkdir ----------------------------------------------------------------------------------------


async def test_mkdir_with_and_without_parents(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    home, root = sandbox.home, sandbox.root
    assert (await mkdir(api, f"{home}/scratch/new"))["code"] == "0"
    assert (root / "scratch/new").is_dir()
    assert (await mkdir(api, f"{home}/scratch/new"))["code"] == "911021"  # exists, no createParents
    assert (await mkdir(api, f"{home}/scratch/a/b/c"))["code"] == "911020"  # parent missing
    assert not (root / "scratch/a").exists()
    assert (await mkdir(api, f"{home}/scratch/a/b/c", parents=True))["code"] == "0"
    assert (root / "scratch/a/b/c").is_dir()
    assert (await mkdir(api, f"{home}/scratch/a/b/c", parents=True))["code"] == "0"  # mkdir -p: no error
    assert (await mkdir(api, f"{home}/notes.txt/x", parents=True))["code"] == "911022"  # a file on the way
    assert (await mkdir(api, "/etc/efile-sandbox-test", parents=True))["code"] == "911030"
    assert not Path("/etc/efile-sandbox-test").exists()


async def test_mkdir_never_leaves_dir_through_a_link(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (sandbox.root / "scratch/escape").symlink_to(outside)
    assert (await mkdir(api, f"{sandbox.home}/scratch/escape/q", parents=True))["code"] == "911030"
    assert list(outside.iterdir()) == []


# -- move -----------------------------------------------------------------------------------------


async def test_move_keeps_folders_whole_with_their_mtime(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    home, root = sandbox.home, sandbox.root
    os.utime(root / "scratch/run-001", (1_600_000_000, 1_600_000_000))
    before = tree(root / "scratch/run-001")
    own_mtime = int((root / "scratch/run-001").stat().st_mtime)
    await mkdir(api, f"{home}/scratch/.q/plan", parents=True)
    body = await move(api, [f"{home}/scratch/run-001", f"{home}/scratch/tmp.log"], f"{home}/scratch/.q/plan")
    assert body["code"] == "0", body
    assert not (root / "scratch/run-001").exists() and not (root / "scratch/tmp.log").exists()
    assert tree(root / "scratch/.q/plan/run-001") == before
    assert int((root / "scratch/.q/plan/run-001").stat().st_mtime) == own_mtime == 1_600_000_000
    assert (root / "scratch/.q/plan/tmp.log").is_file()
    assert [(m.source, m.target) for m in sandbox.sandbox.moves] == [
        (f"{home}/scratch/run-001", f"{home}/scratch/.q/plan/run-001"),
        (f"{home}/scratch/tmp.log", f"{home}/scratch/.q/plan/tmp.log"),
    ]


async def test_uncover_refuses_an_existing_target_and_moves_nothing(
    sandbox: RunningSandbox, api: httpx2.AsyncClient
) -> None:
    home, root = sandbox.home, sandbox.root
    await mkdir(api, f"{home}/scratch/dest")
    (root / "scratch/dest/stdout.log").write_text("already here\n")
    before = tree(root)
    body = await move(api, [f"{home}/scratch/tmp.log", f"{home}/scratch/run-002/stdout.log"], f"{home}/scratch/dest")
    assert body["code"] == "911021"
    assert tree(root) == before  # checked before any source moved
    # cover replaces it
    body = await move(api, [f"{home}/scratch/run-002/stdout.log"], f"{home}/scratch/dest", cover="cover")
    assert body["code"] == "0"
    assert (root / "scratch/dest/stdout.log").read_text() != "already here\n"


async def test_move_error_codes(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    home, root = sandbox.home, sandbox.root
    before = tree(root)
    assert (await move(api, [f"{home}/scratch/tmp.log"], f"{home}/notes.txt"))["code"] == "911022"
    assert (await move(api, [f"{home}/scratch/tmp.log"], f"{home}/scratch/nowhere"))["code"] == "911020"
    assert (await move(api, [f"{home}/scratch/tmp.log", f"{home}/scratch/gone"], f"{home}/projects"))[
        "code"
    ] == "911020"
    assert (await move(api, [f"{home}/scratch/run-001"], f"{home}/scratch/run-001/checkpoints"))["code"] != "0"
    assert (await move(api, [f"{home}/scratch/tmp.log"], f"{home}/scratch"))["code"] == "911507"
    assert (await move(api, [f"{home}/scratch/../notes.txt"], f"{home}/projects"))["code"] == "911030"
    assert (await move(api, ["/etc/hostname"], f"{home}/projects"))["code"] == "911030"
    assert (await move(api, [f"{home}/scratch/tmp.log"], "/tmp"))["code"] == "911030"
    assert tree(root) == before  # none of the refused moves touched anything
    assert (await move(api, [f"{home}/scratch/tmp.log"], f"{home}"))["code"] == "0"  # the home is a fine target
    after = tree(root)
    assert after.pop("tmp.log")[2] == before.pop("scratch/tmp.log")[2]
    assert {k: v[::2] for k, v in after.items()} == {k: v[::2] for k, v in before.items()}


async def test_a_comma_splits_source_paths(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    """Why a client must never send a name holding a comma: the API reads two paths."""
    home, root = sandbox.home, sandbox.root
    (root / "scratch/a,b").write_text("comma\n")
    await mkdir(api, f"{home}/scratch/dest")
    body = await move(api, [f"{home}/scratch/a,b"], f"{home}/scratch/dest")
    assert body["code"] == "911020"
    assert (root / "scratch/a,b").exists()


async def test_links_move_as_links_and_are_never_followed(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, tmp_path: Path
) -> None:
    home, root = sandbox.home, sandbox.root
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("outside\n")
    env = root / "scratch/conda-env"
    (env / "bin").mkdir(parents=True)
    (env / "bin/python3.11").write_text("#!python\n")
    (env / "bin/python").symlink_to("python3.11")
    (env / "lib-outside").symlink_to(outside)
    (root / "scratch/alias").symlink_to(root / "scratch/run-001")
    await mkdir(api, f"{home}/scratch/.q/p", parents=True)
    body = await move(api, [f"{home}/scratch/conda-env", f"{home}/scratch/alias"], f"{home}/scratch/.q/p")
    assert body["code"] == "0"
    moved = root / "scratch/.q/p"
    assert os.readlink(moved / "conda-env/bin/python") == "python3.11"
    assert os.readlink(moved / "conda-env/lib-outside") == str(outside)
    assert os.readlink(moved / "alias") == str(root / "scratch/run-001")  # the link moved, not its target
    assert (root / "scratch/run-001/stdout.log").exists()
    assert (outside / "keep.txt").read_text() == "outside\n" and len(list(outside.iterdir())) == 1
    # A source reached through a link inside DIR resolves on the storage side, like any POSIX path.
    body = await move(api, [f"{home}/scratch/.q/p/alias/stdout.log"], f"{home}/scratch")
    assert body["code"] == "0"
    assert (root / "scratch/stdout.log").exists() and not (root / "scratch/run-001/stdout.log").exists()
    # ...but never one leading out of DIR.
    body = await move(api, [f"{home}/scratch/.q/p/conda-env/lib-outside/keep.txt"], f"{home}/scratch")
    assert body["code"] == "911030"
    assert (outside / "keep.txt").exists()


def test_uncover_holds_against_a_target_created_after_the_check(tmp_path: Path) -> None:
    """The check-then-move race: the kernel refuses to replace (RENAME_NOREPLACE), so nothing is overwritten."""
    (tmp_path / "src").write_text("mine\n")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst/src").write_text("someone else's\n")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    dst = os.open(tmp_path / "dst", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            _rename_no_replace(fd, "src", dst, "src", "/dst/src")
    finally:
        os.close(fd)
        os.close(dst)
    assert (tmp_path / "dst/src").read_text() == "someone else's\n"
    assert (tmp_path / "src").read_text() == "mine\n"


# -- rename ---------------------------------------------------------------------------------------


async def test_rename(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    home, root = sandbox.home, sandbox.root
    (root / "scratch/a,b").write_text("comma\n")
    assert (await rename(api, f"{home}/scratch/a,b", "a_b"))["code"] == "0"
    assert (root / "scratch/a_b").read_text() == "comma\n" and not (root / "scratch/a,b").exists()
    assert (await rename(api, f"{home}/scratch/a_b", "tmp.log"))["code"] == "911021"
    assert (await rename(api, f"{home}/scratch/a_b", "x/y"))["code"] == "911700"
    assert (await rename(api, f"{home}/scratch/a_b", ".."))["code"] == "911700"
    assert (await rename(api, f"{home}/scratch/nothing", "z"))["code"] == "911020"
    assert (root / "scratch/a_b").exists() and (root / "scratch/tmp.log").exists()


# -- upload ---------------------------------------------------------------------------------------


async def test_upload_writes_a_file_and_never_overwrites_unless_cover(
    sandbox: RunningSandbox, api: httpx2.AsyncClient
) -> None:
    home, root = sandbox.home, sandbox.root

    async def upload(content: bytes, cover: str = "uncover") -> str:
        response = await api.post(
            FILE_UPLOAD,
            data={"path": f"{home}/scratch", "cover": cover},
            files={"file": ("manifest.json", content, "application/json")},
        )
        return str(response.json()["code"])

    assert await upload(b'{"v": 1}') == "0"
    assert (root / "scratch/manifest.json").read_bytes() == b'{"v": 1}'
    assert await upload(b'{"v": 2}') == "911021"
    assert (root / "scratch/manifest.json").read_bytes() == b'{"v": 1}'
    assert await upload(b'{"v": 3}', cover="cover") == "0"
    assert (root / "scratch/manifest.json").read_bytes() == b'{"v": 3}'
    assert not [p for p in (root / "scratch").iterdir() if ".upload-" in p.name]


# -- faults ---------------------------------------------------------------------------------------


async def test_a_late_answer_comes_after_the_move_happened(sandbox: RunningSandbox) -> None:
    home, root = sandbox.home, sandbox.root
    sandbox.sandbox.faults = FaultPlan([FaultRule("late_answer", endpoint="move", seconds=1.5)])
    async with httpx2.AsyncClient(base_url=sandbox.base_url, headers={"token": sandbox.token}, timeout=0.3) as api:
        with pytest.raises(httpx2.ReadTimeout):
            await api.post(FILE_MOVE, data={"sourcePaths": f"{home}/scratch/tmp.log", "targetPath": f"{home}/projects"})
    assert (root / "projects/tmp.log").exists() and not (root / "scratch/tmp.log").exists()


async def test_rate_limit_on_move_does_nothing(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    home, root = sandbox.home, sandbox.root
    sandbox.sandbox.faults = FaultPlan([FaultRule("rate_limit", endpoint="move", burst=1)])
    assert (await move(api, [f"{home}/scratch/tmp.log"], f"{home}/projects"))["code"] == "911048"
    assert (root / "scratch/tmp.log").exists()
    assert (await move(api, [f"{home}/scratch/tmp.log"], f"{home}/projects"))["code"] == "0"


async def test_a_target_folder_that_is_a_link_out_of_dir_is_refused(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, tmp_path: Path
) -> None:
    home, root = sandbox.home, sandbox.root
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "scratch/.q").symlink_to(outside)  # someone swapped the quarantine folder for a link
    assert (await move(api, [f"{home}/scratch/tmp.log"], f"{home}/scratch/.q"))["code"] == "911030"
    assert (await mkdir(api, f"{home}/scratch/.q/plan", parents=True))["code"] == "911030"
    assert list(outside.iterdir()) == [] and (root / "scratch/tmp.log").exists()
