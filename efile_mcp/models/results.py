"""Tool output models: snake_case, as agents read them, and published as each tool's outputSchema.

They reuse the wire literals (task status, operation type) so the published schemas speak the API's
own vocabulary, but carry no camelCase alias: an alias would leak into the schema.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .wire import FileEntry, FileOperTask, OperationType, TaskStatus


def escape_invisible(text: str) -> str:
    """Control, format (bidi overrides, zero-width) and line-separator characters as visible `\\uXXXX` text.

    File names come from other people's files: they are data, and must not reorder, hide or break
    what the model or the person reads. Such paths are refused by the path policy anyway.
    """
    if text.isprintable() and not any(unicodedata.category(ch) == "Cf" for ch in text):
        return text
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") else ch for ch in text
    )


#: A string from the server or the agent, shown with invisible characters escaped.
Visible = Annotated[str, AfterValidator(escape_invisible)]

ItemStatus = Literal["would_remove", "removed", "queued", "missing", "failed", "refused"]
EntryType = Literal["file", "directory", "symlink", "other"]


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoveItem(ResultModel):
    path: Visible = Field(description="The path as requested (invisible characters shown as \\uXXXX).")
    status: ItemStatus = Field(
        description=(
            "Dry run: would_remove | missing | refused. Execution: removed (finished inline) | queued (a server "
            "task is working on it; follow it with get_task) | missing (already absent) | failed | refused."
        )
    )
    reason: str | None = Field(default=None, description="Why it is refused, missing, failed or covered.")
    type: EntryType | None = Field(default=None, description="What the path is, as the dry run found it.")
    size: int | None = Field(
        default=None, description="Size in bytes as listed; for a folder, its own entry, not its contents."
    )
    task_id: str | None = Field(default=None, description="Server task id (execution).")
    task_status: TaskStatus | str | None = Field(default=None, description="Server task status when submitted.")
    error_code: str | None = Field(default=None, description="The API's error code when failed.")


class RemoveSummary(ResultModel):
    requested: int = Field(description="Paths named in the call, duplicates included.")
    distinct: int = Field(description="Distinct paths.")
    would_remove: int = 0
    removed: int = 0
    queued: int = 0
    missing: int = 0
    failed: int = 0
    refused: int = 0
    covered: int = Field(default=0, description="Paths inside another requested path, removed with it.")
    total_size: int = Field(
        default=0,
        description="Bytes of the removable files named directly; a folder's contents are not counted "
        "(the API does not report them before deletion).",
    )


class RemovePathsResult(ResultModel):
    dry_run: bool
    items: list[RemoveItem]
    summary: RemoveSummary
    confirmation_token: str | None = Field(
        default=None,
        description="Dry run only: pass it back with dry_run=false and exactly the would_remove paths.",
    )
    expires_at: str | None = Field(default=None, description="When the confirmation token expires (UTC, ISO 8601).")
    confirm_paths: list[str] | None = Field(
        default=None, description="Dry run only: the exact path set the confirmation token covers."
    )
    task_ids: list[str] | None = Field(default=None, description="Execution only: server tasks to follow with get_task.")
    next_step: str = Field(description="What to do next.")


class TaskInfo(ResultModel):
    task_id: str
    status: TaskStatus | str
    operation_type: OperationType | str | None = None
    source_path: Visible | None = None
    error_code: str | None = None
    error_msg: str | None = None
    total_num: int | None = None
    processed_num: int | None = None
    total_size: int | None = None
    processed_size: int | None = None
    progress: str | None = None
    submit_time: str | None = None
    update_time: str | None = None

    @classmethod
    def from_wire(cls, task: FileOperTask) -> TaskInfo:
        return cls(
            task_id=task.task_id,
            status=task.status,
            operation_type=task.operation_type,
            source_path=task.source_path,
            error_code=task.error_code,
            error_msg=task.error_msg,
            total_num=task.total_num,
            processed_num=task.processed_num,
            total_size=task.total_size,
            processed_size=task.processed_size,
            progress=task.progress,
            submit_time=task.submit_time,
            update_time=task.update_time,
        )


class GetTaskResult(ResultModel):
    tasks: list[TaskInfo]
    not_found: list[str] = Field(description="Ids the server does not know (it forgets tasks 24 h after they end).")
    all_terminal: bool = Field(description="True when every known task is complete, fail or cancel.")
    waited_seconds: float = Field(default=0.0, description="How long this call waited.")


class FileInfo(ResultModel):
    name: Visible = Field(description="Entry name; control or invisible characters are shown as \\uXXXX escapes.")
    path: Visible
    type: EntryType
    size: int | None = None
    modified: str | None = Field(default=None, description="Last modification, server local time.")

    @classmethod
    def from_wire(cls, entry: FileEntry) -> FileInfo:
        return cls(
            name=entry.name, path=entry.path, type=entry.kind, size=entry.size, modified=entry.last_modified_time
        )


class ListFilesResult(ResultModel):
    path: str
    total: int = Field(description="Entries matching, across all pages.")
    start: int
    entries: list[FileInfo]
    next_start: int | None = Field(default=None, description="Pass as start to read the next page; null at the end.")


class CancelItem(ResultModel):
    task_id: str
    cancelled: bool
    status: TaskStatus | str | None = Field(default=None, description="Task status after the call, when known.")
    reason: str | None = Field(default=None, description="Why it was not cancelled.")


class CancelTasksResult(ResultModel):
    tasks: list[CancelItem]
