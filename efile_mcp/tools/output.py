"""Tool answers: the structured content an agent works with, and a short text a person or a text-only host reads.

A tool returns its result model; the registry's `EfileTool` renders it here. The structured content is the
model without absent values (no `null`s). The text is a summary of a few lines — counts, sizes, what to do
next, the first few exceptions — never the JSON again: it costs the agent's context once, not twice.
A host that shows only text still learns what it needs to go on (the next page, the confirmation token).

Both stay small whatever the arguments: `TEXT_MAX` characters of text, `models.results.STRUCTURED_MAX` of
structured content, with lists cut to `LIST_BUDGET` (tests/test_answer_sizes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, get_args

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from ..models.quarantine_results import RestorePathsResult
from ..models.results import (
    STRUCTURED_MAX,
    CancelTasksResult,
    DiskUsageResult,
    FindPathsResult,
    GetTaskResult,
    ItemStatus,
    ListFilesResult,
    ProtectedHidden,
    RemoveItem,
    RemovePathsResult,
    StorageStatusResult,
    UsageRest,
    fitting_count,
    json_chars,
)
from ..models.units import human_size

#: The most characters of an answer's text summary.
TEXT_MAX = 2000
#: How many names, paths or exceptions a summary shows before it says "and N more".
SHOWN = 5
_NAME_CHARS = 120


def structured(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def render(model: BaseModel) -> CallToolResult:
    fitting = _FITS.get(type(model))
    if fitting is not None:
        model = fitting(model)
    summarise = _SUMMARIES.get(type(model), _generic)
    text = summarise(model)
    if len(text) > TEXT_MAX:
        text = text[: TEXT_MAX - 1] + "…"
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured(model))


# ------------------------------------------------------------------------------------------ helpers


def _short(text: str) -> str:
    return text if len(text) <= _NAME_CHARS else text[: _NAME_CHARS - 1] + "…"


def _first(values: Iterable[str], total: int) -> str:
    shown = [_short(v) for v in values][:SHOWN]
    more = total - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _incomplete(complete: bool, reason: str | None) -> str:
    return "" if complete else f" INCOMPLETE: {reason or 'the walk stopped early'}."


# ------------------------------------------------------------------------------------------ fitting the budget

_EXCEPTIONS_FIRST = ("refused", "changed", "failed", "missing")


def _fit_listing(page: ListFilesResult) -> ListFilesResult:
    """A page cut where it would outgrow the answer; next_start points at the first entry left out."""
    kept = fitting_count(list(page.entries))
    if kept == len(page.entries):
        return page
    return page.model_copy(update={"entries": page.entries[:kept], "next_start": page.start + kept})


def _fit_removal(result: RemovePathsResult) -> RemovePathsResult:
    """detail='full' over many paths: the exceptions first, then as many items as fit; the rest counted.

    Paths of thousands of characters can outgrow the budget even in a summary: then the views that only
    repeat paths go first (confirm_paths, which the items name too; the per-folder and largest views),
    and the exceptions last, counted in exceptions_not_shown.
    """
    items = result.items or []
    if fitting_count(list(items)) < len(items):
        ordered = sorted(items, key=lambda i: _EXCEPTIONS_FIRST.index(i.status) if i.status in _EXCEPTIONS_FIRST else 9)
        kept = fitting_count(ordered)
        hidden = (result.items_not_shown or 0) + len(items) - kept  # the guard may have counted some already
        result = result.model_copy(update={"items": ordered[:kept], "items_not_shown": hidden})
    for view in ("confirm_paths", "by_parent", "largest", "exceptions"):
        while json_chars(result) > STRUCTURED_MAX and getattr(result, view):
            shown = getattr(result, view)
            update: dict[str, Any] = {view: shown[: len(shown) // 2] or None}
            if view == "exceptions":
                update["exceptions_not_shown"] = (result.exceptions_not_shown or 0) + len(shown) - len(shown) // 2
            result = result.model_copy(update=update)
    return result


def _fit_usage(result: DiskUsageResult) -> DiskUsageResult:
    """Children with very long paths: the smallest of them summed into `others`, as `top` would have."""
    kept = fitting_count(list(result.children))
    if kept == len(result.children):
        return result
    folded = result.children[kept:]
    rest = result.others or UsageRest(count=0, size=0, file_count=0)
    others = UsageRest(
        count=rest.count + len(folded),
        size=rest.size + sum(c.size for c in folded),
        file_count=rest.file_count + sum(c.file_count for c in folded),
    )
    return result.model_copy(update={"children": result.children[:kept], "others": others})


def _fit_tasks(result: GetTaskResult) -> GetTaskResult:
    kept = fitting_count(list(result.tasks))
    if kept == len(result.tasks):
        return result
    hidden = (result.tasks_not_shown or 0) + len(result.tasks) - kept
    return result.model_copy(update={"tasks": result.tasks[:kept], "tasks_not_shown": hidden})


def _fit_cancel(result: CancelTasksResult) -> CancelTasksResult:
    """Many ids: the cancelled ones first, then as many others as fit; the count of cancelled ones kept."""
    ordered = sorted(result.tasks, key=lambda t: not t.cancelled)
    kept = fitting_count(ordered)
    if kept == len(ordered):
        return result
    return result.model_copy(
        update={
            "tasks": ordered[:kept],
            "tasks_not_shown": len(ordered) - kept,
            "cancelled_count": sum(1 for t in ordered if t.cancelled),
        }
    )


_FITS: dict[type[BaseModel], Callable[[Any], BaseModel]] = {
    CancelTasksResult: _fit_cancel,
    DiskUsageResult: _fit_usage,
    ListFilesResult: _fit_listing,
    RemovePathsResult: _fit_removal,
    GetTaskResult: _fit_tasks,
}


# ------------------------------------------------------------------------------------------ one per tool


def _status(result: StorageStatusResult) -> str:
    lines = [
        f"Home: {result.home or 'unknown'}. Removal allowed below: {', '.join(result.allowed_roots) or 'nowhere'}.",
        f"Read-only: {'yes' if result.read_only else 'no'}; confirmation: {result.confirm_mode}; "
        f"at most {result.max_paths} paths per call; region: {result.region or 'unknown'}.",
    ]
    for quota in result.quota[:SHOWN]:
        used = human_size(quota.used_bytes)
        if quota.limit_bytes:
            lines.append(f"Quota {quota.path}: {used} of {human_size(quota.limit_bytes)} ({quota.used_percent}%).")
        else:
            lines.append(f"Quota {quota.path}: {used} used, no limit reported.")
    if result.quota_error:
        lines.append(result.quota_error[:1].upper() + result.quota_error[1:])  # it says "quota is unknown: <why>"
    if result.quarantine is not None and result.quarantine.plan_count:
        held = result.quarantine
        lines.append(
            f"Quarantine: {_plural(held.plan_count, 'plan')}, {human_size(held.total_size)} (still counted in the quota; "
            f"restore_paths puts a plan back; purged after {held.days} days)."
        )
    for problem in (result.roots_problems or [])[:SHOWN]:
        lines.append(f"Allowed root {problem.root} {problem.reason}: write {problem.write_instead} instead.")
    return "\n".join(lines)


def _usage(result: DiskUsageResult) -> str:
    lines = [
        f"{result.path}: {human_size(result.total_size)} in {_plural(result.file_count, 'file')} and "
        f"{_plural(result.dir_count, 'folder')}.{_incomplete(result.complete, result.incomplete_reason)}"
    ]
    if result.children:
        largest = (f"{child.path.rpartition('/')[2]} {human_size(child.size)}" for child in result.children)
        lines.append("Largest: " + _first(largest, len(result.children)) + ".")
    if result.others:
        lines.append(
            f"{_plural(result.others.count, 'more child', 'more children')}: {human_size(result.others.size)}."
        )
    if result.unreadable_count:
        lines.append(f"{_plural(result.unreadable_count, 'folder')} could not be read.")
    lines += _protected(result.protected_hidden)
    return "\n".join(lines)


def _protected(hidden: ProtectedHidden | None) -> list[str]:
    if hidden is None:
        return []
    entries = "1 entry" if hidden.count == 1 else f"{hidden.count} entries"
    return [f"{entries} inside protected folders ({human_size(hidden.size)}): {hidden.note}."]


def _find(result: FindPathsResult) -> str:
    lines = [
        f"{_plural(result.total_matches, 'match', 'matches')} below {result.path}, {human_size(result.total_size)} in all."
        f"{_incomplete(result.complete, result.incomplete_reason)}"
    ]
    if result.matches:
        largest = (f"{m.path} ({human_size(m.size)})" for m in result.matches)
        lines.append(f"This page ({len(result.matches)}), largest first: " + _first(largest, len(result.matches)) + ".")
    lines += _protected(result.protected_hidden)
    if result.next_cursor:
        lines.append(f"Next page: cursor={result.next_cursor}")
    return "\n".join(lines)


def _listing(result: ListFilesResult) -> str:
    end = result.start + len(result.entries)
    lines = [f"{result.path}: entries {result.start + 1 if result.entries else 0}-{end} of {result.total}."]
    if result.entries:
        lines.append("Names: " + _first((e.name for e in result.entries), len(result.entries)) + ".")
    lines += _protected(result.protected_hidden)
    if result.next_start is not None:
        lines.append(f"Next page: start={result.next_start}")
    return "\n".join(lines)


def _exception(item: RemoveItem) -> str:
    return f"{_short(item.path)}: {item.status}" + (f" ({_short(item.reason)})" if item.reason else "")


def _removal(result: RemovePathsResult) -> str:
    summary = result.summary
    counts = {status: getattr(summary, status, 0) for status in get_args(ItemStatus) if getattr(summary, status, 0)}
    at_least = "at least " if summary.lower_bound else ""
    head = "Dry run (nothing deleted)" if result.dry_run else "Execution"
    lines = [
        f"{head}, plan {result.plan_id or '-'}: {summary.distinct} distinct paths; "
        + (", ".join(f"{status} {count}" for status, count in counts.items()) or "nothing to do")
        + f"; {at_least}{human_size(summary.total_size)}, {at_least}{_plural(summary.file_count, 'file')}."
    ]
    listed = result.items or []
    exceptions = result.exceptions or [i for i in listed if i.status in ("refused", "missing", "failed", "changed")]
    if exceptions:
        total = len(exceptions) + (result.exceptions_not_shown or 0)
        lines.append("Exceptions: " + _first((_exception(i) for i in exceptions), total) + ".")
    if result.items_not_shown:
        lines.append(f"{result.items_not_shown} more items not listed (they did not fit one answer).")
    if result.task_count:
        lines.append(f"{_plural(result.task_count, 'server task')}: follow with get_task.")
    if result.not_previewed:
        lines.append(f"{result.not_previewed} new matches were not previewed and not removed.")
    if result.confirmation_token:
        lines.append(f"confirmation_token (expires {result.expires_at}): {result.confirmation_token}")
    lines.append(f"Next: {result.next_step}")
    return "\n".join(lines)


def _tasks(result: GetTaskResult) -> str:
    counts = ", ".join(f"{c.status} {c.count}" for c in result.by_status) or "none known"
    lines = [f"Tasks: {counts}. All ended: {'yes' if result.all_terminal else 'no'}."]
    unfinished = [t for t in result.tasks if t.status not in ("complete", "fail", "cancel")]
    if unfinished:
        lines.append("Not ended: " + _first((f"{t.task_id} {t.status}" for t in unfinished), len(unfinished)) + ".")
    failed = [t for t in result.tasks if t.status == "fail"]
    if failed:
        lines.append("Failed: " + _first((f"{t.task_id} ({t.error_msg or t.error_code})" for t in failed), len(failed)))
    if result.not_found:
        total = result.not_found_count or len(result.not_found)
        lines.append("Unknown ids (never issued, or ended over 24 h ago): " + _first(result.not_found, total) + ".")
    if result.waited_seconds >= 0.05:
        lines.append(f"Waited {result.waited_seconds:.1f} s.")
    return "\n".join(lines)


def _cancel(result: CancelTasksResult) -> str:
    done = [t.task_id for t in result.tasks if t.cancelled]
    kept = [f"{t.task_id} ({t.reason})" for t in result.tasks if not t.cancelled]
    total = len(result.tasks) + (result.tasks_not_shown or 0)
    cancelled = len(done) if result.cancelled_count is None else result.cancelled_count
    lines = [f"Cancelled {cancelled} of {total}" + (": " + _first(done, cancelled) if done else "") + "."]
    if kept:
        lines.append("Not cancelled: " + _first(kept, total - cancelled) + ".")
    return "\n".join(lines)


def _restore(result: RestorePathsResult) -> str:
    summary = result.summary
    counts = ", ".join(
        f"{status} {getattr(summary, status)}"
        for status in ("restored", "conflict", "missing", "failed")
        if getattr(summary, status)
    )
    lines = [f"Restore of plan {result.plan_id}: {summary.requested} requested; {counts or 'nothing restored'}."]
    exceptions = result.exceptions or [i for i in result.items or [] if i.status != "restored"]
    if exceptions:
        shown = (f"{_short(i.path)}: {i.status}" + (f" ({_short(i.reason)})" if i.reason else "") for i in exceptions)
        lines.append("Exceptions: " + _first(shown, summary.requested - summary.restored) + ".")
    lines.append(f"Next: {result.next_step}")
    return "\n".join(lines)


def _generic(model: BaseModel) -> str:
    """Any other result: its scalar fields, one line; lists counted."""
    parts = []
    for name, value in structured(model).items():
        if isinstance(value, list):
            parts.append(f"{name}: {len(value)}")
        elif not isinstance(value, dict):
            parts.append(f"{name}: {_short(str(value))}")
    return "; ".join(parts) + "."


_SUMMARIES: dict[type[BaseModel], Callable[[Any], str]] = {
    StorageStatusResult: _status,
    DiskUsageResult: _usage,
    FindPathsResult: _find,
    ListFilesResult: _listing,
    RemovePathsResult: _removal,
    GetTaskResult: _tasks,
    CancelTasksResult: _cancel,
    RestorePathsResult: _restore,
}
