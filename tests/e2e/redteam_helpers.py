"""Helpers the red-team files share: the sandbox world's files and selections, a plan's stored paths, the
paths sent, resuming a dry run, and the sandbox's listing variants and requests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from efile_mcp.guard.removal import Removal
from efile_mcp.guard.seen import load_header, plan_rows
from efile_mcp.models.results import RemovePathsResult, Selection
from efile_mcp.sandbox.envelope import ok
from efile_mcp.sandbox.file_list import ListingRules, list_folder, parse_query

from ..test_removal import World


def _scratch(world: World) -> Path:
    return world.sandbox.root / "scratch"


def _virtual(world: World, real: Path) -> str:
    return f"{world.sandbox.home}/{real.relative_to(world.sandbox.root)}"


def _files(folder: Path, count: int, prefix: str = "f", width: int = 3) -> list[Path]:
    """`count` files {prefix}000.out... sized 1, 2, ... bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        path = folder / f"{prefix}{i:0{width}d}.out"
        path.write_bytes(b"x" * (i + 1))
        made.append(path)
    return made


def _select(world: World, relative: str, name: str = "*.out") -> Selection:
    return Selection(path=f"{world.sandbox.home}/scratch/{relative}", name=name, type="file")


def _sent(world: World) -> list[str]:
    return list(world.sandbox.sandbox.received_remove_paths)


async def _stored_paths(world: World, plan_id: str) -> list[str]:
    header = await load_header(world.store, plan_id)
    assert header is not None
    paths: list[str] = []
    async for rows in plan_rows(world.store, header):
        paths += [seen.path for seen in rows]
    return paths


def _twice(paths: list[str]) -> list[str]:
    return sorted(path for path, n in Counter(paths).items() if n > 1)


async def _read_on(removal: Removal, answer: RemovePathsResult, calls: int = 40) -> tuple[RemovePathsResult, int]:
    """Resumes until the dry run ends (at most `calls` more calls): the final answer and the calls it took."""
    made = 0
    while answer.resume and made < calls:
        answer = await removal.preview(None, None, resume=answer.resume)
        made += 1
    return answer, made


def _server(world: World, *, ignores_start: bool | None = None, page_cap: int | None = -1) -> None:
    config = world.sandbox.sandbox.config
    if ignores_start is not None:
        config.list_ignores_start = ignores_start
    if page_cap != -1:
        config.list_page_cap = page_cap


def _start_of(request: Any) -> int:
    return int(request.query_params.get("start", "0"))


def _listed(request: Any) -> str:
    return str(request.query_params.get("path", ""))


def _children_name_links_too(world: World, folder: Path) -> None:
    """`children` of `folder` also name its links to folders (a Java server's isDirectory follows links)."""
    sandbox = world.sandbox.sandbox

    async def with_links(endpoint: str, request: Any) -> Any:
        if endpoint != "file/list" or _listed(request).rstrip("/") != _virtual(world, folder):
            return None
        config = sandbox.config
        rules = ListingRules(config.list_max_limit, config.list_page_cap, config.list_ignores_start, True)
        query = parse_query(request.query_params, sandbox.home, rules)
        data = await anyio.to_thread.run_sync(list_folder, sandbox.fs, query, rules)
        base = _virtual(world, folder)
        links = sorted(p.name for p in folder.iterdir() if p.is_symlink() and p.is_dir())
        data["children"] += [{"id": f"{base}/{n}", "label": n, "path": f"{base}/{n}"} for n in links]
        return ok(data)

    sandbox.fault = with_links
