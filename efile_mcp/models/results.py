"""Tool output models: snake_case, as agents read them, and published as each tool's outputSchema.

They reuse the wire literals (task status, operation type) so the published schemas speak the API's
own vocabulary, but carry no camelCase alias: an alias would leak into the schema.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from .wire import FileEntry, FileOperTask, OperationType, TaskStatus

if TYPE_CHECKING:
    from .quarantine import QuarantineStatus


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

ItemStatus = Literal[
    "would_remove",
    "removed",
    "queued",
    "missing",
    "failed",
    "refused",
    "changed",
    "quarantined",
    "restored",
    "conflict",
]
EntryType = Literal["file", "directory", "symlink", "other"]
SelectType = Literal["file", "directory", "any"]

#: Up to this many distinct paths an answer lists every item; above it, a summary (detail="full" for all).
ITEMS_LISTED_MAX = 50


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Selection(ResultModel):
    """What to match below a folder: the same filter for find_paths and remove_paths(select=...)."""

    path: str = Field(
        min_length=1,
        max_length=4096,
        description="Absolute folder to search below (e.g. an allowed root such as ~/scratch, written out).",
    )
    name: str | None = Field(
        default=None, max_length=255, description="Glob on the final name, e.g. '*.log' or 'core.*' (case-sensitive)."
    )
    type: SelectType = Field(default="any", description="file, directory or any.")
    min_size: int | None = Field(default=None, ge=0, description="At least this many bytes (a folder: its whole tree).")
    max_size: int | None = Field(default=None, ge=0, description="At most this many bytes (a folder: its whole tree).")
    older_than_days: float | None = Field(
        default=None, ge=0, description="Last modified more than this many days ago (a folder: its newest entry)."
    )
    newer_than_days: float | None = Field(
        default=None, ge=0, description="Last modified less than this many days ago (a folder: its newest entry)."
    )
    max_depth: int | None = Field(
        default=None, ge=1, le=64, description="Match at most this many levels below path (1: its direct entries)."
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("select.path must be an absolute folder path (start with '/')")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("select.path must not contain control characters")
        return value


class RemoveItem(ResultModel):
    path: Visible = Field(description="The path (invisible characters shown as \\uXXXX).")
    status: ItemStatus = Field(
        description=(
            "Dry run: would_remove | missing | refused. Execution: removed (finished inline) | queued (a server "
            "task is working on it; follow it with get_task) | missing (already absent) | failed | refused | "
            "changed (it changed since the dry run and was not sent)."
        )
    )
    reason: str | None = Field(default=None, description="Why it is refused, missing, failed, changed or covered.")
    type: EntryType | None = Field(default=None, description="What the path is, as the dry run found it.")
    size: int | None = Field(
        default=None, description="Bytes a removal frees: a file's size; a folder's whole tree (regular files)."
    )
    file_count: int | None = Field(default=None, description="A folder: regular files in its tree.")
    newest_modified: str | None = Field(
        default=None, description="A folder: the newest modification in its tree; a file: its own (ISO 8601)."
    )
    lower_bound: bool | None = Field(
        default=None, description="True when the folder was too big to read whole: size and counts are 'at least'."
    )
    task_id: str | None = Field(default=None, description="Server task id (execution).")
    task_status: TaskStatus | str | None = Field(default=None, description="Server task status when submitted.")
    error_code: str | None = Field(default=None, description="The API's error code when failed.")


class RemoveSummary(ResultModel):
    requested: int = Field(description="Paths named in the call (or matched by select), duplicates included.")
    distinct: int = Field(description="Distinct paths.")
    would_remove: int = 0
    removed: int = 0
    queued: int = 0
    missing: int = 0
    failed: int = 0
    refused: int = 0
    changed: int = 0
    quarantined: int = Field(default=0, description="Moved into the root's quarantine: restorable with restore_paths.")
    restored: int = 0
    conflict: int = 0
    covered: int = Field(default=0, description="Paths inside another path of the same call, removed with it.")
    total_size: int = Field(
        default=0, description="Bytes the removal frees: files plus the whole trees of folders (regular files)."
    )
    file_count: int = Field(default=0, description="Regular files the removal deletes, folders' contents included.")
    folder_count: int = Field(default=0, description="Folders among the paths.")
    newest_modified: str | None = Field(default=None, description="The newest modification among all of it.")
    lower_bound: bool | None = Field(
        default=None, description="True when some folder was too big to read whole: totals are 'at least'."
    )


class ParentGroup(ResultModel):
    parent: Visible
    count: int
    size: int


class RemovePathsResult(ResultModel):
    dry_run: bool
    plan_id: str | None = Field(default=None, description="The plan this answer belongs to (audit log, get_task).")
    summary: RemoveSummary
    items: list[RemoveItem] | None = Field(
        default=None, description=f"Every item, when there are at most {ITEMS_LISTED_MAX} (or detail='full')."
    )
    exceptions: list[RemoveItem] | None = Field(
        default=None, description="Summary answers: refused, missing, failed and changed items (capped)."
    )
    exceptions_not_shown: int | None = Field(default=None, description="Exceptions beyond those listed.")
    largest: list[RemoveItem] | None = Field(default=None, description="Summary answers: the largest items.")
    by_parent: list[ParentGroup] | None = Field(
        default=None, description="Summary answers: count and bytes per parent folder (largest first, capped)."
    )
    confirmation_token: str | None = Field(
        default=None,
        description="Dry run only: pass it back with dry_run=false (paths and select may then be left out).",
    )
    expires_at: str | None = Field(default=None, description="When the confirmation token expires (UTC, ISO 8601).")
    confirm_paths: list[str] | None = Field(
        default=None, description=f"Dry run with at most {ITEMS_LISTED_MAX} paths: the exact set the token covers."
    )
    task_ids: list[str] | None = Field(
        default=None, description=f"Execution: server tasks to follow with get_task (at most {ITEMS_LISTED_MAX})."
    )
    task_count: int | None = Field(default=None, description="Execution: server tasks in all (get_task takes plan_id).")
    not_previewed: int | None = Field(
        default=None,
        description="Execution by select: matches now present that the dry run did not show (not removed).",
    )
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
    tasks: list[TaskInfo] = Field(
        description="The tasks (above 50, only those not complete, capped; by_status counts them all)."
    )
    by_status: list[TaskStatusCount] = Field(default_factory=list, description="Tasks per status.")
    tasks_not_shown: int | None = Field(default=None, description="Known tasks left out of `tasks`.")
    not_found: list[str] = Field(description="Ids the server does not know (it forgets tasks 24 h after they end).")
    not_found_count: int | None = Field(default=None, description="All unknown ids, when more than are listed.")
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


class ProtectedHidden(ResultModel):
    """What lies inside protected folders (~/.ssh, ~/.gnupg, …), counted but not named."""

    count: int = Field(description="Entries inside protected folders left out of this answer.")
    size: int = Field(description="Their bytes (regular files).")
    note: str = "names inside protected folders are not shown; EFILE_SHOW_PROTECTED=true shows them"


class ListFilesResult(ResultModel):
    path: str
    total: int = Field(description="Entries matching, across all pages.")
    start: int
    entries: list[FileInfo]
    next_start: int | None = Field(default=None, description="Pass as start to read the next page; null at the end.")
    protected_hidden: ProtectedHidden | None = None


class CancelItem(ResultModel):
    task_id: str
    cancelled: bool
    status: TaskStatus | str | None = Field(default=None, description="Task status after the call, when known.")
    reason: str | None = Field(default=None, description="Why it was not cancelled.")


class CancelTasksResult(ResultModel):
    tasks: list[CancelItem]


class UsageChild(ResultModel):
    path: Visible
    type: EntryType
    size: int = Field(description="Bytes: a file's size; a folder's whole tree (regular files, links not followed).")
    file_count: int = Field(description="Regular files (a file counts itself).")
    newest_modified: str | None = Field(default=None, description="Newest modification in it (ISO 8601).")


class UsageRest(ResultModel):
    count: int = Field(description="Direct children not listed above.")
    size: int
    file_count: int


class DiskUsageResult(ResultModel):
    path: Visible
    total_size: int = Field(description="Bytes of regular files in the whole tree.")
    file_count: int
    dir_count: int = Field(description="Folders below path.")
    link_count: int = Field(default=0, description="Symbolic links seen (never followed, sized 0).")
    newest_modified: str | None = None
    complete: bool = Field(description="False when the walk stopped early or some folder could not be read whole.")
    incomplete_reason: str | None = None
    entries_seen: int
    requests: int = Field(description="file/list requests this answer took.")
    children: list[UsageChild] = Field(description="The largest direct children, largest first.")
    others: UsageRest | None = Field(default=None, description="The rest of the direct children, summed.")
    unreadable: list[str] | None = Field(default=None, description="Folders that could not be listed (capped).")
    unreadable_count: int | None = None
    folders_pending: int | None = None
    resume: str | None = Field(default=None, description="Pass as resume to read on; absent when complete.")
    protected_hidden: ProtectedHidden | None = None


class FindMatch(ResultModel):
    path: Visible
    type: EntryType
    size: int = Field(description="Bytes (a folder: its whole tree, when it was read).")
    modified: str | None = Field(
        default=None, description="Modification time (a folder: newest in its tree), ISO 8601."
    )


class FindPathsResult(ResultModel):
    path: Visible
    matches: list[FindMatch] = Field(description="This page of matches, largest first.")
    total_matches: int
    total_size: int = Field(description="Bytes of all matches (a folder's tree once, not its matches again).")
    complete: bool = Field(description="False when the walk stopped early: there may be more matches.")
    incomplete_reason: str | None = None
    entries_seen: int
    next_cursor: str | None = Field(default=None, description="Pass as cursor for the next page; absent at the end.")
    unreadable_count: int | None = None
    folders_pending: int | None = None
    protected_hidden: ProtectedHidden | None = None


class QuotaInfo(ResultModel):
    path: str
    limit_bytes: int | None = Field(
        default=None, description="The quota in bytes (the service's GB taken as GiB); null when it reports none (0)."
    )
    used_bytes: int
    used_percent: float | None = Field(
        default=None, description="Usage above 100% is reported as is (the platform allows it)."
    )


class RootProblem(ResultModel):
    root: str = Field(description="The allowed root as configured (resolved).")
    reason: str = Field(description="What is wrong with it on the storage.")
    write_instead: str = Field(description="What to put in EFILE_ALLOWED_ROOTS instead (quoted for a shell).")


class StorageStatusResult(ResultModel):
    home: str | None = Field(
        default=None, description="The home directory (null when unknown: EFILE_TOKEN without the center)."
    )
    allowed_roots: list[str] = Field(description="Where removal is allowed, resolved ('~' expanded).")
    protected_names: list[str]
    read_only: bool
    max_paths: int
    confirm_mode: str
    region: str | None = None
    quota: list[QuotaInfo]
    roots_problems: list[RootProblem] | None = Field(
        default=None, description="Allowed roots that are missing or not folders on the storage, and what to write."
    )
    quota_error: str | None = Field(default=None, description="Why quota is unknown, and what to set.")
    quarantine: QuarantineStatus | None = Field(
        default=None, description="What is in quarantine (restorable with restore_paths), per plan, and the total."
    )


class TaskStatusCount(ResultModel):
    status: str
    count: int


# The quarantine's models build on ResultModel above; importing them completes StorageStatusResult.
from . import quarantine as _quarantine  # noqa: E402, F401
