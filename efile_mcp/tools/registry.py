"""The tool surface, declared as values: read-only mode simply does not register the tools that write.

The registry is the one source of what is published about a tool: its name, title, annotations and
description. The README's tool table and manifest.json's `tools[]` are generated from it:

    python -m efile_mcp.tools.registry --write      # rewrite both from TOOLS
    python -m efile_mcp.tools.registry --check      # exit 1 when either differs

and tests/test_registry.py fails when either differs by a word. The first sentence of a tool's
description is its one-line summary (manifest, README); the rest is for the model.

Each tool is an `EfileTool`: its function returns a result model, which `output.render` turns into
structured content plus a short text summary; arguments the SDK cannot validate come back as one line
per argument (`errors.argument_errors`); published schemas are compacted (`schema.py`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ValidationError

from ..settings import Settings
from . import find, listing, remove, restore, status, tasks, usage
from .output import render
from .schema import compact_input, compact_output
from .tool_errors import argument_errors, unknown_arguments


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    annotations: ToolAnnotations
    build: Callable[[Settings], Callable[..., Any]]  # settings -> the tool function (schemas may depend on them)

    @property
    def read_only(self) -> bool:
        return bool(self.annotations.read_only_hint)

    @property
    def summary(self) -> str:
        """The description's first sentence: what the manifest and the README say of the tool."""
        first = re.split(r"(?<=[.!?])\s", self.description.strip(), maxsplit=1)[0]
        return " ".join(first.split())


def _reader(title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title, read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )


def _writer(title: str, *, destructive: bool, idempotent: bool) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="storage_status",
        title="Storage status and quota",
        description=status.DESCRIPTION,
        annotations=_reader("Storage status and quota"),
        build=status.build,
    ),
    ToolSpec(
        name="disk_usage",
        title="Disk usage of a folder",
        description=usage.DESCRIPTION,
        annotations=_reader("Disk usage of a folder"),
        build=usage.build,
    ),
    ToolSpec(
        name="find_paths",
        title="Find files and folders",
        description=find.DESCRIPTION,
        annotations=_reader("Find files and folders"),
        build=find.build,
    ),
    ToolSpec(
        name="list_files",
        title="List files",
        description=listing.DESCRIPTION,
        annotations=_reader("List files"),
        build=listing.build,
    ),
    ToolSpec(
        name="remove_paths",
        title="Remove files and folders (dry run first)",
        description=remove.DESCRIPTION,
        annotations=_writer("Remove files and folders", destructive=True, idempotent=False),
        build=remove.build,
    ),
    ToolSpec(
        name="restore_paths",
        title="Restore quarantined files and folders",
        description=restore.DESCRIPTION,
        annotations=_writer("Restore quarantined files and folders", destructive=False, idempotent=False),
        build=restore.build,
    ),
    ToolSpec(
        name="get_task",
        title="Follow removal tasks",
        description=tasks.GET_DESCRIPTION,
        annotations=_reader("Follow removal tasks"),
        build=tasks.build_get_task,
    ),
    ToolSpec(
        name="cancel_tasks",
        title="Cancel removal tasks",
        description=tasks.CANCEL_DESCRIPTION,
        annotations=_writer("Cancel removal tasks", destructive=False, idempotent=True),
        build=tasks.build_cancel_tasks,
    ),
)


class EfileTool(Tool):
    """A tool as efile-mcp publishes it: results rendered by `output.render`, argument errors in one line each."""

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        known = {field.alias or name for name, field in self.fn_metadata.arg_model.model_fields.items()}
        unknown = sorted(set(arguments) - known)
        if unknown:  # a misspelt filter would otherwise be dropped silently, and the call do something broader
            raise ToolError(unknown_arguments(self.name, unknown, sorted(known)))
        try:
            result = await super().run(arguments, context, convert_result=False)
        except ToolError as exc:
            cause = exc.__cause__
            if not isinstance(exc, UnexpectedToolError) and isinstance(cause, ValidationError):
                raise ToolError(argument_errors(self.name, cause)) from cause
            raise
        if not convert_result:
            return result
        if isinstance(result, BaseModel) and isinstance(result, self.fn_metadata.output_model or ()):
            result = render(result)
        return self.fn_metadata.convert_result(result)


def _published(hints: ToolAnnotations) -> ToolAnnotations:
    """The hints a client acts on, once: the title is the tool's own, and a read-only tool's destructive and
    idempotent hints mean nothing (MCP reads them only when readOnlyHint is false)."""
    unsaid: dict[str, Any] = {"title": None}
    if hints.read_only_hint:
        unsaid |= {"destructive_hint": None, "idempotent_hint": None}
    return hints.model_copy(update=unsaid)


def offered(settings: Settings) -> tuple[ToolSpec, ...]:
    return tuple(spec for spec in TOOLS if spec.read_only or not settings.read_only)


def tools_for(settings: Settings) -> list[Tool]:
    """The tools this configuration offers, ready for `MCPServer(tools=...)`."""
    built: list[Tool] = []
    for spec in offered(settings):
        tool = EfileTool.from_function(
            spec.build(settings),
            name=spec.name,
            title=spec.title,
            description=" ".join(spec.description.split()),
            annotations=_published(spec.annotations),
            structured_output=True,
        )
        tool.parameters = compact_input(tool.parameters)
        if tool.fn_metadata.output_schema is not None:
            tool.fn_metadata.output_schema = compact_output(tool.fn_metadata.output_schema)
        built.append(tool)
    return built


# ------------------------------------------------------------------------------------------ published texts

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "manifest.json"
README = ROOT / "README.md"
TABLE_BEGIN = (
    "<!-- tool table: generated from efile_mcp/tools/registry.py (python -m efile_mcp.tools.registry --write) -->"
)
TABLE_END = "<!-- end of tool table -->"


def _annotations_text(spec: ToolSpec) -> str:
    hints = spec.annotations
    if hints.read_only_hint:
        return "read-only"
    if hints.destructive_hint:
        return "**destructive**"
    return "writes, not destructive" + (", idempotent" if hints.idempotent_hint else "")


def markdown_table() -> str:
    rows = ["| tool | annotations | what it does |", "|---|---|---|"]
    rows += [f"| `{spec.name}` | {_annotations_text(spec)} | {spec.summary} |" for spec in TOOLS]
    return "\n".join(rows)


def manifest_tools() -> list[dict[str, str]]:
    return [{"name": spec.name, "description": spec.summary} for spec in TOOLS]


def table_in(text: str) -> str | None:
    """The generated table inside `text` (between the markers), or None when the markers are absent."""
    if TABLE_BEGIN not in text or TABLE_END not in text:
        return None
    return text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()


def table_files(root: Path = ROOT) -> list[Path]:
    """The Markdown files that hold the generated tool table (README.md, or a page under docs/)."""
    candidates = [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]
    return [path for path in candidates if path.is_file() and TABLE_BEGIN in path.read_text(encoding="utf-8")]


def write_published(root: Path = ROOT) -> list[Path]:
    """Rewrite manifest.json's tools[] and the README's tool table from TOOLS; the files changed."""
    changed: list[Path] = []
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("tools") != manifest_tools():
        manifest["tools"] = manifest_tools()
        manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        changed.append(manifest_path)
    for path in table_files(root):
        text = path.read_text(encoding="utf-8")
        before, rest = text.split(TABLE_BEGIN, 1)
        _, after = rest.split(TABLE_END, 1)
        updated = f"{before}{TABLE_BEGIN}\n{markdown_table()}\n{TABLE_END}{after}"
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


def stale_published(root: Path = ROOT) -> list[str]:
    """What differs from TOOLS: manifest.json's tools[], and every page whose tool table is not the registry's."""
    stale = []
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("tools") != manifest_tools():
        stale.append("manifest.json tools[]")
    pages = table_files(root)
    stale += [f"{p.relative_to(root)} tool table" for p in pages if table_in(p.read_text("utf-8")) != markdown_table()]
    if not pages:
        stale.append(f"no page holds the tool table (between {TABLE_BEGIN!r} and {TABLE_END!r})")
    return stale


def main(argv: list[str] | None = None) -> int:
    """Write (or check) the published copies; messages go to stderr (stdout is MCP's in this package)."""
    parser = argparse.ArgumentParser(prog="python -m efile_mcp.tools.registry", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite manifest.json tools[] and the README table")
    group.add_argument("--check", action="store_true", help="exit 1 when either differs from the registry")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_published():
            print(f"updated {path.relative_to(ROOT)}", file=sys.stderr)
        return 0
    stale = stale_published()
    fix = "differs from efile_mcp/tools/registry.py: run python -m efile_mcp.tools.registry --write"
    for what in stale:
        print(f"{what} {fix}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
