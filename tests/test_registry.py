"""One source per published fact: the registry says what each tool is; the manifest and the README repeat it exactly.

When this fails, run `python -m efile_mcp.tools.registry --write` and commit manifest.json and the README.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from efile_mcp.tools import registry
from efile_mcp.tools.registry import (
    ROOT,
    TABLE_BEGIN,
    TABLE_END,
    TOOLS,
    manifest_tools,
    markdown_table,
    table_files,
    table_in,
)


def test_the_manifest_lists_each_tool_as_the_registry_describes_it() -> None:
    manifest = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tools"] == manifest_tools(), "run python -m efile_mcp.tools.registry --write"


def test_the_readme_tool_table_is_the_registry_s() -> None:
    (page,) = table_files()  # exactly one page holds the table
    assert table_in(page.read_text(encoding="utf-8")) == markdown_table(), (
        f"{page.name}: run python -m efile_mcp.tools.registry --write"
    )


def test_each_tool_has_one_description_whose_first_sentence_is_its_summary() -> None:
    for spec in TOOLS:
        assert spec.summary.endswith("."), spec.name
        assert len(spec.summary) <= 220, (spec.name, len(spec.summary))
        assert " ".join(spec.description.split()).startswith(spec.summary), spec.name


async def test_tools_list_publishes_the_registry_s_words(client: Client) -> None:
    published = {tool.name: tool for tool in (await client.list_tools()).tools}
    for spec in TOOLS:
        tool = published[spec.name]
        assert tool.description == " ".join(spec.description.split())
        assert tool.title == spec.title


def test_the_script_writes_what_the_tests_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stale copy is found, rewritten by --write, and then checks clean; the rest of the files is kept."""
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "x", "tools": [{"name": "old"}]}), encoding="utf-8")
    page = tmp_path / "docs" / "tools.md"
    page.parent.mkdir()
    page.write_text(f"# Tools\n\n{TABLE_BEGIN}\n| old |\n{TABLE_END}\n\nAfter.\n", encoding="utf-8")
    assert registry.stale_published(tmp_path) == ["manifest.json tools[]", "docs/tools.md tool table"]
    assert registry.write_published(tmp_path) == [tmp_path / "manifest.json", page]
    assert registry.stale_published(tmp_path) == []
    manifest: dict[str, Any] = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "x" and manifest["tools"] == manifest_tools()
    assert page.read_text(encoding="utf-8").endswith(f"{TABLE_END}\n\nAfter.\n")
    assert registry.main(["--check"]) == 0 and capsys.readouterr().out == ""
