"""file/list variants a client must survive: an ignored `start`, `children`, large limits, large folders."""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import pytest

from efile_mcp.models.wire import FileEntry, FileListResult
from efile_mcp.sandbox import RunningSandbox

from .test_sandbox import anyio_backend, api, list_dir, names, vpath

__all__ = ["anyio_backend", "api"]


def make_folder(folder: Path, files: int, folders: int = 0) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"f{i:05d}").write_bytes(b"x" * (i % 7))
    for i in range(folders):
        (folder / f"sub{i:03d}").mkdir()


@pytest.mark.parametrize("sandbox", [{"list_ignores_start": True}], indirect=True)
async def test_a_server_that_ignores_start_answers_the_first_page_every_time(
    sandbox: RunningSandbox, api: httpx2.AsyncClient
) -> None:
    first = await list_dir(api, start=0, limit=4)
    second = await list_dir(api, start=4, limit=4)
    assert names(first) == names(second) == [".bashrc", ".ssh", "notes.txt", "projects"]
    assert first["data"]["total"] == second["data"]["total"] == 6
    # A large limit still returns the whole folder in one page.
    assert len(names(await list_dir(api, start=4, limit=100_000))) == 6


async def test_children_lists_every_sub_folder_whatever_the_page(
    sandbox: RunningSandbox, api: httpx2.AsyncClient
) -> None:
    folder = sandbox.root / "many"
    make_folder(folder, files=30, folders=12)
    os.symlink("sub000", folder / "link-to-sub")  # a link is not a sub-folder
    path = vpath(sandbox, "many")
    body = await list_dir(api, path, start=40, limit=2, keyWord="f0")
    children = body["data"]["children"]
    assert [child["label"] for child in children] == [f"sub{i:03d}" for i in range(12)]
    assert all(child["path"] == f"{path}/{child['label']}" and child["id"] for child in children)
    assert len(body["data"]["fileList"]) == 0 and body["data"]["total"] == 30  # keyWord "f0" matches the files
    assert FileListResult.model_validate(body["data"]).children is not None


@pytest.mark.parametrize("sandbox", [{"list_children": False}], indirect=True)
async def test_children_can_be_left_out(api: httpx2.AsyncClient) -> None:
    body = await list_dir(api)
    assert "children" not in body["data"] and body["data"]["total"] == 6


async def test_a_limit_of_100000_returns_a_whole_large_folder(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    make_folder(sandbox.root / "large", files=5214)
    body = await list_dir(api, vpath(sandbox, "large"), limit=100_000)
    assert body["code"] == "0" and body["data"]["total"] == 5214
    assert names(body) == [f"f{i:05d}" for i in range(5214)]
    by_size = await list_dir(api, vpath(sandbox, "large"), limit=100_000, orderBy="size", order="desc")
    sizes = [entry["size"] for entry in by_size["data"]["fileList"]]
    assert len(sizes) == 5214 and sizes == sorted(sizes, reverse=True)
    # Name breaks ties in a stable way: the page boundaries of two calls line up.
    page1 = await list_dir(api, vpath(sandbox, "large"), limit=1000, orderBy="size")
    page2 = await list_dir(api, vpath(sandbox, "large"), start=1000, limit=1000, orderBy="size")
    whole = await list_dir(api, vpath(sandbox, "large"), limit=2000, orderBy="size")
    assert names(page1) + names(page2) == names(whole)


@pytest.mark.parametrize("sandbox", [{"list_page_cap": 3, "list_ignores_start": True}], indirect=True)
async def test_page_cap_and_ignored_start_together(api: httpx2.AsyncClient) -> None:
    assert names(await list_dir(api, start=3, limit=100)) == [".bashrc", ".ssh", "notes.txt"]


async def test_entries_have_exactly_the_wire_shape(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    """Entries are built without the model, so check them against it: same keys, order and values."""
    os.symlink("notes.txt", sandbox.root / "notes-link")
    body = await list_dir(api, orderBy="lastModifiedTime")
    expected_keys = list(FileEntry.model_fields[name].alias or name for name in FileEntry.model_fields)
    for entry in body["data"]["fileList"]:
        assert list(entry) == expected_keys
        assert FileEntry.model_validate(entry).model_dump(by_alias=True) == entry
    assert set(body["data"]) == {"total", "path", "fileList", "children"}
