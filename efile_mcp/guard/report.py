"""Answers an agent's context can hold, and the form a person reads.

Up to ITEMS_LISTED_MAX distinct paths, every item is listed. Above that an answer is a summary: counts
and bytes per status and per parent folder, the exceptions (refused, missing, failed, changed: capped,
with the rest counted), the largest items and the plan id — whatever the number of paths, a few KB.
`detail="full"` returns every item for the few who need them.
"""

from __future__ import annotations

import time
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

from ..client.walk import iso_time
from ..models.results import (
    ITEMS_LISTED_MAX,
    ParentGroup,
    RemoveItem,
    RemovePathsResult,
    RemoveSummary,
)
from ..models.units import human_size  # binary units, as the quota and every other text
from .seen import SeenPath

Detail = Literal["auto", "full", "summary"]

EXCEPTIONS_SHOWN = 12
LARGEST_SHOWN = 8
PARENTS_SHOWN = 8
REASON_CHARS = 240
EXCEPTION_STATUSES = ("refused", "changed", "failed", "missing")


def item_of(seen: SeenPath, status: str = "would_remove", **extra: object) -> RemoveItem:
    folder = seen.kind == "directory"
    return RemoveItem(
        path=seen.path,
        status=status,  # type: ignore[arg-type]
        type=seen.kind,
        size=seen.size,
        file_count=seen.file_count if folder else None,
        newest_modified=iso_time(seen.newest if folder else seen.mtime),
        lower_bound=True if not seen.complete else None,
        **extra,  # type: ignore[arg-type]
    )


def summarise(
    items: Sequence[RemoveItem], *, requested: int, covered: int, counted: Sequence[SeenPath]
) -> RemoveSummary:
    """Counts per status; sizes and counts over `counted` (the paths the removal really deletes)."""
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item.status] += 1
    newest = max((s.newest if s.kind == "directory" else s.mtime) or 0.0 for s in counted) if counted else 0.0
    return RemoveSummary(
        requested=requested,
        distinct=len(items) + covered,
        covered=covered,
        total_size=sum(s.size for s in counted),
        file_count=sum(s.file_count for s in counted),
        folder_count=sum(1 for s in counted if s.kind == "directory"),
        newest_modified=iso_time(newest) if newest else None,
        lower_bound=True if any(not s.complete for s in counted) else None,
        **counts,
    )


def _short(item: RemoveItem) -> RemoveItem:
    if item.reason and len(item.reason) > REASON_CHARS:
        return item.model_copy(update={"reason": item.reason[: REASON_CHARS - 1] + "…"})
    return item


def shape(result: RemovePathsResult, items: Sequence[RemoveItem], detail: Detail) -> RemovePathsResult:
    """Put `items` into the answer in full, or as a summary when there are many."""
    if detail == "full" or (detail == "auto" and len(items) <= ITEMS_LISTED_MAX):
        return result.model_copy(update={"items": list(items)})
    exceptions = [_short(i) for i in items if i.status in EXCEPTION_STATUSES]
    exceptions.sort(key=lambda i: EXCEPTION_STATUSES.index(i.status))
    sized = sorted((i for i in items if i.size), key=lambda i: -(i.size or 0))
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item in items:
        group = groups[item.path.rpartition("/")[0] or "/"]
        group[0] += 1
        group[1] += item.size or 0
    parents = sorted(groups.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
    return result.model_copy(
        update={
            "exceptions": exceptions[:EXCEPTIONS_SHOWN] or None,
            "exceptions_not_shown": max(0, len(exceptions) - EXCEPTIONS_SHOWN) or None,
            "largest": [_short(i) for i in sized[:LARGEST_SHOWN]] or None,
            "by_parent": [ParentGroup(parent=p, count=c, size=z) for p, (c, z) in parents[:PARENTS_SHOWN]] or None,
        }
    )


# ---------------------------------------------------------------------------------------------------
# What the person reads


def human_age(epoch: float | None, now: float) -> str | None:
    if epoch is None:
        return None
    seconds = max(0.0, now - epoch)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            n = int(seconds // length)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


#: Characters that render as nothing, or as a blank, or that pass for something else.
_BLANKS = frozenset(
    "\u3164\u3000\u2800\u115f\u1160\uffa0\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u202f\u205f\u180e"
)


def _suspicious(ch: str) -> bool:
    category = unicodedata.category(ch)
    return (
        ch in _BLANKS
        or category in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn")
        or unicodedata.bidirectional(ch) in ("R", "AL", "RLE", "RLO", "RLI", "LRE", "LRO", "LRI", "FSI", "PDF", "PDI")
    )


_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")


def _mixed_scripts(component: str) -> bool:
    """Latin letters next to Cyrillic or Greek ones: `dаta` with a Cyrillic а passes for `data` on screen."""
    seen = {
        next((script for script in _SCRIPTS if unicodedata.name(ch, "").startswith(script)), "")
        for ch in component
        if ch.isalpha()
    }
    seen.discard("")
    return len(seen) > 1


def shown_name(path: str) -> str:
    """A path as the person's form shows it: anything that would render blank, reorder the line or hide as
    something else is written as a visible `\\u{…}` escape; so are runs of combining marks and names of
    only spaces. The form shows, it never refuses: the policy decides what may be removed."""
    out: list[str] = []
    for component in path.split("/"):
        if component and not component.strip(" ." + "".join(_BLANKS)):
            out.append("".join(f"\\u{{{ord(ch):04x}}}" for ch in component))
            continue
        text: list[str] = []
        marks = 0
        mixed = _mixed_scripts(component)
        edge = len(component) - len(component.rstrip(" ")), len(component) - len(component.lstrip(" "))
        for index, ch in enumerate(component):
            combining = unicodedata.category(ch) in ("Mn", "Me")
            marks = marks + 1 if combining else 0
            at_edge = ch == " " and (index < edge[1] or index >= len(component) - edge[0])
            foreign_letter = mixed and ord(ch) > 0x7F and ch.isalpha()
            if _suspicious(ch) or (combining and marks > 2) or (combining and not text) or at_edge or foreign_letter:
                text.append(f"\\u{{{ord(ch):04x}}}")
            else:
                text.append(ch)
        out.append("".join(text))
    return "/".join(out)


FORM_PATHS = 20
FORM_PARENTS = 5


def _counted(seen: Sequence[SeenPath]) -> str:
    folders = sum(1 for s in seen if s.kind == "directory")
    files = len(seen) - folders
    parts = []
    if folders:
        parts.append(f"{folders} folder{'s' if folders != 1 else ''}")
    if files:
        parts.append(f"{files} file{'s' if files != 1 else ''}")
    return " and ".join(parts) or "nothing"


def totals_line(seen: Sequence[SeenPath], now: float) -> str:
    size = sum(s.size for s in seen)
    files = sum(s.file_count for s in seen)
    newest = max(((s.newest if s.kind == "directory" else s.mtime) or 0.0 for s in seen), default=0.0)
    at_least = "at least " if any(not s.complete for s in seen) else ""
    line = f"{_counted(seen)}, {at_least}{human_size(size)}"
    if any(s.kind == "directory" for s in seen):
        line += f", {at_least}{files} file{'s' if files != 1 else ''} in all"
    age = human_age(newest or None, now)
    return line + (f", newest changed {age}" if age else "")


def question(seen: Sequence[SeenPath], *, covered: int = 0, now: float | None = None, mode: str = "delete") -> str:
    """The same text on every round for the same plan: the SDK only accepts an answer to the question it asked."""
    now = time.time() if now is None else now
    ordered = sorted(seen, key=lambda s: (s.kind != "directory", -s.size, s.path))
    verb = "move into the quarantine (restorable until it is purged)" if mode == "quarantine" else "permanently delete"
    lines = [f"An AI agent asks to {verb} {totals_line(ordered, now)} on your SCNet storage:", ""]
    for s in ordered[:FORM_PATHS]:
        what = (
            f"folder, {'at least ' if not s.complete else ''}{human_size(s.size)}, {s.file_count} files"
            if s.kind == "directory"
            else f"{s.kind}, {human_size(s.size)}"
        )
        lines.append(f"  {shown_name(s.path)}  ({what})")
    rest = ordered[FORM_PATHS:]
    if rest:
        lines.append(f"  … and {len(rest)} more: {totals_line(rest, now)}, in")
        by_parent: dict[str, list[SeenPath]] = defaultdict(list)
        for s in rest:
            by_parent[s.path.rpartition("/")[0] or "/"].append(s)
        ranked = sorted(by_parent.items(), key=lambda kv: -len(kv[1]))
        for parent, inside in ranked[:FORM_PARENTS]:
            lines.append(f"      {shown_name(parent)}/  ({totals_line(inside, now)})")
        if len(ranked) > FORM_PARENTS:
            lines.append(f"      and {len(ranked) - FORM_PARENTS} more folders")
    if covered:
        lines.append(f"  ({covered} more path(s) named lie inside these folders and go with them)")
    if mode == "quarantine":
        lines += ["", "They can be restored with restore_paths until the quarantine is purged. Move them?"]
    else:
        lines += ["", "This cannot be undone. Delete them?"]
    return "\n".join(lines)
