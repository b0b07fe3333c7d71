"""file/list variants a client must survive: an ignored `start`, `children`, large limits, large folders."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from efile_mcp.models.wire import FileEntry, FileListResult
from efile_mcp.sandbox import RunningSandbox, file_list
from efile_mcp.sandbox.file_list import ListingQuery, ListingRules, list_folder
from efile_mcp.sandbox.fs import PathMapper

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


def test_pages_of_an_unchanged_folder_come_from_one_reading_and_any_change_is_seen_by_the_next_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox keeps a large folder's sorted names between pages; it must never answer from a stale copy."""
    mapper = PathMapper(tmp_path, "/public/home/u")
    make_folder(tmp_path / "big", files=50, folders=2)
    rules = ListingRules(max_limit=100_000, page_cap=None, ignores_start=False, children=True)
    # The folder was just written: a second from now it is settled, and its names may be kept.
    monkeypatch.setattr(file_list, "now_ns", lambda: time.time_ns() + 2 * file_list.SETTLED_NS)
    reads = 0
    real_scandir = os.scandir

    def counting_scandir(where: Any) -> Any:
        nonlocal reads
        reads += 1
        return real_scandir(where)

    monkeypatch.setattr(file_list.os, "scandir", counting_scandir)

    def page(start: int, limit: int = 10, order: str = "asc", keyword: str = "") -> tuple[list[str], int]:
        data = list_folder(mapper, ListingQuery("/public/home/u/big", start, limit, order, "name", keyword), rules)
        return [entry["name"] for entry in data["fileList"]], data["total"]

    everything = sorted([f"f{i:05d}" for i in range(50)] + ["sub000", "sub001"])
    assert [name for start in range(0, 52, 10) for name in page(start)[0]] == everything
    assert page(0, 100, "desc")[0] == everything[::-1] and page(45, 5, "desc")[0] == everything[2:7][::-1]
    assert page(0, 100, keyword="sub") == (["sub000", "sub001"], 2)
    assert reads == 1
    (tmp_path / "big" / "f00003").unlink()
    (tmp_path / "big" / "a-new-one").write_bytes(b"new")
    (tmp_path / "big" / "f00010").rename(tmp_path / "big" / "z-renamed")
    assert page(0, 3) == (["a-new-one", "f00000", "f00001"], 52)
    assert page(50, 10)[0] == ["sub001", "z-renamed"]
    assert reads == 2
    # Sizes and times are never kept: a file written to (the folder itself unchanged) shows its new size.
    (tmp_path / "big" / "f00001").write_bytes(b"0123456789")
    data = list_folder(mapper, ListingQuery("/public/home/u/big", 2, 1, "asc", "name", ""), rules)
    assert data["fileList"][0]["name"] == "f00001" and data["fileList"][0]["size"] == 10


def test_a_folder_changed_within_the_last_second_is_read_again_for_every_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change within the same timestamp tick would leave the folder's times as they were, so a folder read
    that soon after a change is never kept: the next page reads it again."""
    mapper = PathMapper(tmp_path, "/public/home/u")
    make_folder(tmp_path / "fresh", files=5)
    rules = ListingRules(max_limit=100_000, page_cap=None, ignores_start=False, children=True)
    changed = os.stat(tmp_path / "fresh").st_ctime_ns
    monkeypatch.setattr(file_list, "now_ns", lambda: changed + file_list.SETTLED_NS - 1)
    reads = 0
    real_scandir = os.scandir

    def counting_scandir(where: Any) -> Any:
        nonlocal reads
        reads += 1
        return real_scandir(where)

    monkeypatch.setattr(file_list.os, "scandir", counting_scandir)
    query = ListingQuery("/public/home/u/fresh", 0, 100, "asc", "name", "")
    assert list_folder(mapper, query, rules)["total"] == list_folder(mapper, query, rules)["total"] == 5
    assert reads == 2
    monkeypatch.setattr(file_list, "now_ns", lambda: changed + file_list.SETTLED_NS)
    assert list_folder(mapper, query, rules)["total"] == list_folder(mapper, query, rules)["total"] == 5
    assert reads == 3
