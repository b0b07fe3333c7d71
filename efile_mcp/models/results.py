"""Tool output models: snake_case, as agents read them, and published as each tool's outputSchema.

They reuse the wire literals (task status, operation type) so the published schemas speak the API's
own vocabulary, but carry no camelCase alias: an alias would leak into the schema.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .times import server_time_iso
from .wire import FileEntry, FileOperTask, OperationType, TaskStatus

if TYPE_CHECKING:
    from .quarantine_results import QuarantineStatus

#: The longest path a tool takes, in UTF-8 bytes (Linux PATH_MAX; the path policy's MAX_PATH_BYTES).
PATH_MAX_BYTES = 4096


def absolute_path(value: str) -> str:
    """The one rule for a path argument: absolute, printable, not too long.

    `~` is not expanded: a removal names each path exactly, and storage_status gives the home to write.
    """
    if not value.startswith("/"):
        hint = " (write '~' as the home directory storage_status gives)" if value.startswith("~") else ""
        raise ValueError(f"must be an absolute path starting with '/'{hint}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    if len(value.encode("utf-8", "surrogatepass")) > PATH_MAX_BYTES:
        raise ValueError(f"is longer than {PATH_MAX_BYTES} bytes")
    return value


def escape_invisible(text: str) -> str:
    """Control, format (bidi overrides, zero-width) and line-separator characters as visible `\\uXXXX` text.

    File names come from other people's files: they are data, and must not reorder, hide or break
    what the model or the person reads. Such paths are refused by the path policy anyway.
    """
    if text.isascii() and text.isprintable():  # most names: no format character is ASCII, so no per-character look-up
        return text
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

#: The most characters of an answer's structured content (compact JSON), whatever the arguments.
STRUCTURED_MAX = 16_000
#: Characters of it one list (entries, matches, items, tasks) may fill; the rest of an answer is a few fields.
LIST_BUDGET = STRUCTURED_MAX - 3_000


def json_chars(value: BaseModel | Any) -> int:
    """Characters of a value (a model without its absent fields) as compact JSON: how answer budgets are measured."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_none=True)
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def fitting_count(values: Sequence[Any], budget: int = LIST_BUDGET) -> int:
    """How many of `values`, from the first, fit in `budget` characters of JSON (at least one)."""
    used = 0
    for index, value in enumerate(values):
        used += json_chars(value) + 1
        if used > budget and index > 0:
            return index
    return len(values)


class ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Selection(ResultModel):
    # What to match below a folder: the same filter for find_paths and remove_paths(select=...).
    # (A comment, not a docstring: a docstring would be published in every remove_paths schema.)

    path: Annotated[str, AfterValidator(absolute_path)] = Field(
        min_length=1, max_length=4096, description="Absolute folder (starts with '/')."
    )
    # The filters are described once, as find_paths' arguments.
    name: str | None = Field(default=None, max_length=255)
    type: SelectType = "any"
    min_size: int | None = Field(default=None, ge=0)
    max_size: int | None = Field(default=None, ge=0)
    older_than_days: float | None = Field(default=None, ge=0)
    newer_than_days: float | None = Field(default=None, ge=0)
    max_depth: int | None = Field(default=None, ge=1, le=64)


class RemoveItem(ResultModel):
    path: Visible
    status: ItemStatus
    reason: str | None = None
    type: EntryType | None = None
    size: int | None = None
    file_count: int | None = None
    newest_modified: str | None = None
    lower_bound: bool | None = Field(default=None, description="Too big to read whole: counts are 'at least'.")
    task_id: str | None = None
    task_status: TaskStatus | str | None = None
    error_code: str | None = None


class RemoveSummary(ResultModel):
    requested: int
    distinct: int
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
    covered: int = Field(default=0, description="Inside another path of the call: removed with it.")
    total_size: int = 0
    file_count: int = 0
    folder_count: int = 0
    newest_modified: str | None = None
    lower_bound: bool | None = None


class ParentGroup(ResultModel):
    parent: Visible
    count: int
    size: int


class RemovePathsResult(ResultModel):
    dry_run: bool
    plan_id: str | None = None
    summary: RemoveSummary
    items: list[RemoveItem] | None = Field(default=None, description=f"Every item, up to {ITEMS_LISTED_MAX} paths.")
    exceptions: list[RemoveItem] | None = Field(
        default=None, description="Above that: refused, missing, failed, changed."
    )
    exceptions_not_shown: int | None = None
    items_not_shown: int | None = None
    largest: list[RemoveItem] | None = None
    by_parent: list[ParentGroup] | None = None
    confirmation_token: str | None = None
    expires_at: str | None = None
    confirm_paths: list[str] | None = None
    task_ids: list[str] | None = None
    task_count: int | None = None
    not_previewed: int | None = Field(default=None, description="New matches since the dry run: not removed.")
    resume: str | None = Field(default=None, description="Dry run not read whole yet: pass as resume to read on.")
    next_step: str


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
            submit_time=server_time_iso(task.submit_time),
            update_time=server_time_iso(task.update_time),
        )


class GetTaskResult(ResultModel):
    tasks: list[TaskInfo] = Field(description="Above 50: only those not complete.")
    by_status: list[TaskStatusCount] = Field(default_factory=list)
    tasks_not_shown: int | None = None
    not_found: list[str]
    not_found_count: int | None = None
    all_terminal: bool
    waited_seconds: float = 0.0


class FileInfo(ResultModel):
    name: Visible
    path: Visible
    type: EntryType
    size: int | None = None
    modified: str | None = None

    @classmethod
    def from_wire(cls, entry: FileEntry) -> FileInfo:
        modified = server_time_iso(entry.last_modified_time)
        return cls(name=entry.name, path=entry.path, type=entry.kind, size=entry.size, modified=modified)


class ProtectedHidden(ResultModel):
    """What lies inside protected folders (~/.ssh, ~/.gnupg, …), counted but not named."""

    count: int = Field(description="Entries inside protected folders left out of this answer.")
    size: int = Field(description="Their bytes (regular files).")
    note: str = "names inside protected folders are not shown; EFILE_SHOW_PROTECTED=true shows them"


class ListFilesResult(ResultModel):
    path: str
    total: int = Field(description="Entries in all pages.")
    start: int
    entries: list[FileInfo]
    next_start: int | None = Field(default=None, description="start of the next page; absent at the end.")
    protected_hidden: ProtectedHidden | None = None


class CancelItem(ResultModel):
    task_id: str
    cancelled: bool
    status: TaskStatus | str | None = None
    reason: str | None = None


class CancelTasksResult(ResultModel):
    tasks: list[CancelItem]
    tasks_not_shown: int | None = None
    cancelled_count: int | None = Field(default=None, description="Given when not every task is listed.")


class UsageChild(ResultModel):
    path: Visible
    type: EntryType
    size: int
    file_count: int
    newest_modified: str | None = None
    quarantine: bool | None = Field(
        default=None,
        description="True for a quarantine folder: removed data kept restorable (restore_paths), still counting "
        "against the quota until `efile-mcp purge` deletes what expired.",
    )


class UsageRest(ResultModel):
    count: int
    size: int
    file_count: int


class DiskUsageResult(ResultModel):
    path: Visible
    total_size: int
    file_count: int
    dir_count: int
    link_count: int = 0
    newest_modified: str | None = None
    complete: bool
    incomplete_reason: str | None = None
    entries_seen: int
    requests: int
    children: list[UsageChild] = Field(description="Largest direct children first.")
    others: UsageRest | None = Field(default=None, description="The other children, summed.")
    unreadable: list[str] | None = None
    unreadable_count: int | None = None
    folders_pending: int | None = None
    resume: str | None = Field(default=None, description="Pass as resume to read on; absent when complete.")
    protected_hidden: ProtectedHidden | None = None


class FindMatch(ResultModel):
    path: Visible
    type: EntryType
    size: int
    modified: str | None = None


class FindPathsResult(ResultModel):
    path: Visible
    matches: list[FindMatch] = Field(description="This page, largest first.")
    total_matches: int
    total_size: int = Field(description="Bytes of all matches.")
    complete: bool
    incomplete_reason: str | None = None
    entries_seen: int
    next_cursor: str | None = Field(default=None, description="cursor of the next page; absent at the end.")
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
    home: str | None = None
    allowed_roots: list[str] = Field(description="Removal is allowed only below these.")
    protected_names: list[str]
    read_only: bool
    max_paths: int
    confirm_mode: str
    region: str | None = None
    quota: list[QuotaInfo]
    roots_problems: list[RootProblem] | None = Field(
        default=None, description="Allowed roots that are missing or not folders on the storage, and what to write."
    )
    quota_error: str | None = None
    quarantine: QuarantineStatus | None = Field(
        default=None, description="What is in quarantine (restorable with restore_paths), per plan, and the total."
    )


class TaskStatusCount(ResultModel):
    status: str
    count: int


# The quarantine's models build on ResultModel above; importing them completes StorageStatusResult.
from . import quarantine_results as _quarantine  # noqa: E402, F401
