"""What agents see is a reviewed diff: every tool's published name, title, annotations, input and output schema.

A change to any of them fails this test until the snapshot is regenerated on purpose:

    EFILE_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_tool_schemas.py

and the diff of tests/snapshots/tools.json is then part of the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mcp import Client

from efile_mcp.server import build_server
from efile_mcp.settings import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"


async def published(tmp_path: Path) -> list[dict[str, object]]:
    settings = Settings(
        base_url="http://127.0.0.1:9",
        token="t",
        audit_log=tmp_path / "audit.jsonl",
        state_dir=tmp_path / "state",
        allowed_roots=("/public/home/x/scratch",),
    )
    async with Client(build_server(settings), mode="legacy") as client:
        tools = (await client.list_tools()).tools
    return [
        {
            "name": tool.name,
            "title": tool.title,
            "annotations": tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
            if tool.annotations
            else None,
            "description": tool.description,
            "inputSchema": tool.input_schema,
            "outputSchema": tool.output_schema,
        }
        for tool in tools
    ]


async def test_published_tools_match_the_reviewed_snapshot(tmp_path: Path) -> None:
    current = published_text = (
        json.dumps(await published(tmp_path), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    )
    if os.environ.get("EFILE_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(published_text, encoding="utf-8")
    assert SNAPSHOT.exists(), "no snapshot yet: run with EFILE_UPDATE_SNAPSHOTS=1 and review tests/snapshots/tools.json"
    assert current == SNAPSHOT.read_text(encoding="utf-8"), (
        "the tools agents see changed: review the difference, then regenerate with EFILE_UPDATE_SNAPSHOTS=1"
    )
