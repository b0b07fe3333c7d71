"""The tool surface, declared as values: read-only mode simply does not register the tools that write.

A test walks `TOOLS`: every tool annotated, names unique, and the manifest lists the same tools.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from ..config import Settings
from . import find, listing, remove, status, tasks, usage


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


def _reader(title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title, read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
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
        annotations=ToolAnnotations(
            title="Remove files and folders",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=False,
        ),
        build=remove.build,
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
        annotations=ToolAnnotations(
            title="Cancel removal tasks",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
        build=tasks.build_cancel_tasks,
    ),
)


def offered(settings: Settings) -> tuple[ToolSpec, ...]:
    return tuple(spec for spec in TOOLS if spec.read_only or not settings.read_only)


def register(server: MCPServer[Any], settings: Settings) -> None:
    for spec in offered(settings):
        server.add_tool(
            spec.build(settings),
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=spec.annotations,
            structured_output=True,
        )
