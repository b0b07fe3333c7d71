"""Answers an agent's context can hold, and the form a person reads.

Up to ITEMS_LISTED_MAX distinct paths, every item is listed. Above that an answer is a summary: counts
and bytes per status and per parent folder, the exceptions (refused, missing, failed, changed: capped,
with the rest counted), the largest items and the plan id — whatever the number of paths, a few KB.
`detail="full"` returns every item for the few who need them.
"""

from __future__ import annotations

import heapq
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

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
#: Parent folders a tally keeps to name the heaviest PARENTS_SHOWN (bounded whatever the number of folders).
PARENTS_KEPT = 256
REASON_CHARS = 240
EXCEPTION_STATUSES = ("refused", "changed", "failed", "missing")
#: The person's form names this many paths, then tells the rest by parent folder (this many named).
FORM_PATHS = 20
FORM_PARENTS = 5


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


def _short(item: RemoveItem) -> RemoveItem:
    if item.reason and len(item.reason) > REASON_CHARS:
        return item.model_copy(update={"reason": item.reason[: REASON_CHARS - 1] + "…"})
    return item


#: With detail="full", items kept per kind (exceptions, the others) for the answer to choose from: more than
#: one answer can hold (tools/output.py cuts it to fit and counts the rest), whatever the number of paths.
FULL_KEPT = 500


class Tally:
    """A removal's items fed one at a time, in plan order: the answer's summary and its views (every item up to
    ITEMS_LISTED_MAX, else the exceptions, largest and heaviest parents) in memory bounded by those views, not
    by the number of paths (a plan holds up to EFILE_MAX_PLAN_PATHS). `count_removed` adds a path's bytes and
    files to the totals (only what the removal really deletes, or would)."""

    def __init__(self, detail: Detail) -> None:
        self.detail = detail
        self.items = 0
        self.counts: Counter[str] = Counter()
        self._all: list[RemoveItem] | None = []  # detail="auto": every item, until there are too many to list
        self._full: list[tuple[int, RemoveItem]] = []  # detail="full": the first FULL_KEPT that are not exceptions
        self._exceptions: dict[str, list[tuple[int, RemoveItem]]] = {status: [] for status in EXCEPTION_STATUSES}
        self._largest: list[tuple[int, int, RemoveItem]] = []  # a min-heap: (size, -order, item)
        self._parents: dict[str, list[int]] = {}
        self.total_size = self.file_count = self.folder_count = 0
        self.newest = 0.0
        self.lower_bound = False

    def add(self, item: RemoveItem, *, counts: bool = True) -> None:
        """One item of the answer; `counts=False` for an item only listed (a path inside a planned folder)."""
        self.items += 1
        if counts:
            self.counts[item.status] += 1
        if self.detail == "auto" and self._all is not None:
            if len(self._all) < ITEMS_LISTED_MAX:
                self._all.append(item)
            else:  # one more than a list holds: the answer is a summary
                self._all = None
        if self.detail == "full" and item.status not in EXCEPTION_STATUSES and len(self._full) < FULL_KEPT:
            self._full.append((self.items, item))
        if item.status in EXCEPTION_STATUSES:
            kept = self._exceptions[item.status]
            if len(kept) < (FULL_KEPT if self.detail == "full" else EXCEPTIONS_SHOWN):
                kept.append((self.items, item))
        if item.size:
            entry = (item.size, -self.items, item)
            if len(self._largest) < LARGEST_SHOWN:
                heapq.heappush(self._largest, entry)
            elif entry[:2] > self._largest[0][:2]:
                heapq.heapreplace(self._largest, entry)
        group = self._parents.get(parent := item.path.rpartition("/")[0] or "/")
        if group is None:
            self._parents[parent] = [1, item.size or 0]
            if len(self._parents) > PARENTS_KEPT:
                # The heaviest half stays: a folder's items come together (a listing, a plan's rows in order), so
                # a folder dropped here has ended and was among the lightest; the view names PARENTS_SHOWN.
                heaviest = sorted(self._parents.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
                self._parents = dict(heaviest[: PARENTS_KEPT // 2])
        else:
            group[0] += 1
            group[1] += item.size or 0

    def to_json(self) -> dict[str, Any]:
        """What a dry run read across calls keeps between them (the state store's walk record): bounded."""

        def dump(item: RemoveItem) -> dict[str, Any]:
            return item.model_dump(exclude_none=True)

        return {
            "d": self.detail,
            "i": self.items,
            "c": dict(self.counts),
            "a": None if self._all is None else [dump(i) for i in self._all],
            "f": [[n, dump(i)] for n, i in self._full],
            "x": {status: [[n, dump(i)] for n, i in kept] for status, kept in self._exceptions.items()},
            "l": [[z, n, dump(i)] for z, n, i in self._largest],
            "p": self._parents,
            "t": [self.total_size, self.file_count, self.folder_count, self.newest, self.lower_bound],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        load = RemoveItem.model_validate
        tally = cls(data["d"])
        tally.items = int(data["i"])
        tally.counts = Counter({str(k): int(v) for k, v in data["c"].items()})
        tally._all = None if data["a"] is None else [load(i) for i in data["a"]]
        tally._full = [(int(n), load(i)) for n, i in data["f"]]
        tally._exceptions = {
            status: [(int(n), load(i)) for n, i in data["x"].get(status, [])] for status in EXCEPTION_STATUSES
        }
        tally._largest = [(int(z), int(n), load(i)) for z, n, i in data["l"]]
        heapq.heapify(tally._largest)
        tally._parents = {str(k): [int(v[0]), int(v[1])] for k, v in data["p"].items()}
        size, files, folders, newest, lower = data["t"]
        tally.total_size, tally.file_count, tally.folder_count = int(size), int(files), int(folders)
        tally.newest, tally.lower_bound = float(newest), bool(lower)
        return tally

    def count_removed(self, seen: SeenPath) -> None:
        self.total_size += seen.size
        self.file_count += seen.file_count
        if seen.kind == "directory":
            self.folder_count += 1
        self.newest = max(self.newest, (seen.newest if seen.kind == "directory" else seen.mtime) or 0.0)
        self.lower_bound = self.lower_bound or not seen.complete

    def summary(self, *, requested: int, covered: int) -> RemoveSummary:
        return RemoveSummary(
            requested=requested,
            distinct=sum(self.counts.values()) + covered,
            covered=covered,
            total_size=self.total_size,
            file_count=self.file_count,
            folder_count=self.folder_count,
            newest_modified=iso_time(self.newest) if self.newest else None,
            lower_bound=True if self.lower_bound else None,
            **self.counts,
        )

    def shape(self, result: RemovePathsResult) -> RemovePathsResult:
        """The answer with its items in full (a few, or detail="full"), or as a summary when there are many."""
        exceptions = [item for status in EXCEPTION_STATUSES for _, item in self._exceptions[status]]
        if self.detail == "full":
            # In plan order; tools/output.py puts the exceptions first when they do not all fit.
            listed = [
                item
                for _, item in sorted([*self._full, *(pair for kept in self._exceptions.values() for pair in kept)])
            ]
            hidden = self.items - len(listed)
            return result.model_copy(update={"items": listed, "items_not_shown": hidden or None})
        if self.detail == "auto" and self._all is not None:
            return result.model_copy(update={"items": list(self._all)})
        all_exceptions = sum(self.counts[status] for status in EXCEPTION_STATUSES)
        largest = [item for _, _, item in sorted(self._largest, key=lambda e: (-e[0], -e[1]))]
        parents = sorted(self._parents.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
        return result.model_copy(
            update={
                "exceptions": [_short(i) for i in exceptions[:EXCEPTIONS_SHOWN]] or None,
                "exceptions_not_shown": max(0, all_exceptions - EXCEPTIONS_SHOWN) or None,
                "largest": [_short(i) for i in largest] or None,
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


class _Totals:
    """Counts, bytes, files and the newest change over some paths, added one at a time."""

    __slots__ = ("file_count", "files", "folders", "incomplete", "newest", "size")

    def __init__(self) -> None:
        self.folders = self.files = self.size = self.file_count = 0
        self.newest = 0.0
        self.incomplete = False

    def add(self, seen: SeenPath) -> None:
        if seen.kind == "directory":
            self.folders += 1
        else:
            self.files += 1
        self.size += seen.size
        self.file_count += seen.file_count
        self.newest = max(self.newest, (seen.newest if seen.kind == "directory" else seen.mtime) or 0.0)
        self.incomplete = self.incomplete or not seen.complete

    @property
    def count(self) -> int:
        return self.folders + self.files

    def line(self, now: float) -> str:
        parts = []
        if self.folders:
            parts.append(f"{self.folders} folder{'s' if self.folders != 1 else ''}")
        if self.files:
            parts.append(f"{self.files} file{'s' if self.files != 1 else ''}")
        at_least = "at least " if self.incomplete else ""
        line = f"{' and '.join(parts) or 'nothing'}, {at_least}{human_size(self.size)}"
        if self.folders:
            line += f", {at_least}{self.file_count} file{'s' if self.file_count != 1 else ''} in all"
        age = human_age(self.newest or None, now)
        return line + (f", newest changed {age}" if age else "")


def _form_order(seen: SeenPath) -> tuple[bool, int, str]:
    """Folders first, then the biggest, then by path: the order the form lists paths in, whatever the plan's."""
    return (seen.kind != "directory", -seen.size, seen.path)


class FormQuestion:
    """The person's form over a plan of any size, from its paths read twice in any order (a plan's rows, a chunk
    at a time): `first` learns the totals and the paths the form names, `second` what the rest holds per
    folder. Memory: the named paths and one entry per parent folder, never the plan."""

    def __init__(self) -> None:
        self.total = _Totals()
        self._named: list[SeenPath] = []
        self._rest = _Totals()
        #: Per parent of the rest: its totals and its first path in the form's order (ties rank by it).
        self._parents: dict[str, tuple[_Totals, tuple[bool, int, str]]] = {}

    def first(self, seen: Iterable[SeenPath]) -> None:
        chunk = list(seen)
        for one in chunk:
            self.total.add(one)
        self._named = heapq.nsmallest(FORM_PATHS, [*self._named, *chunk], key=_form_order)

    def second(self, seen: Iterable[SeenPath]) -> None:
        named = {one.path for one in self._named}
        for one in seen:
            if one.path in named:
                continue
            self._rest.add(one)
            parent = one.path.rpartition("/")[0] or "/"
            order = _form_order(one)
            held = self._parents.get(parent)
            if held is None:
                self._parents[parent] = (_Totals(), order)
                held = self._parents[parent]
            elif order < held[1]:
                self._parents[parent] = held = (held[0], order)
            held[0].add(one)

    def text(self, *, covered: int = 0, now: float | None = None, mode: str = "delete") -> str:
        """The same text on every round for the same plan: the SDK only accepts an answer to the question it asked."""
        now = time.time() if now is None else now
        verb = (
            "move into the quarantine (restorable until it is purged)" if mode == "quarantine" else "permanently delete"
        )
        lines = [f"An AI agent asks to {verb} {self.total.line(now)} on your SCNet storage:", ""]
        for s in self._named:
            what = (
                f"folder, {'at least ' if not s.complete else ''}{human_size(s.size)}, {s.file_count} files"
                if s.kind == "directory"
                else f"{s.kind}, {human_size(s.size)}"
            )
            lines.append(f"  {shown_name(s.path)}  ({what})")
        if self._rest.count:
            lines.append(f"  … and {self._rest.count} more: {self._rest.line(now)}, in")
            ranked = sorted(self._parents.items(), key=lambda kv: (-kv[1][0].count, kv[1][1]))
            for parent, (inside, _) in ranked[:FORM_PARENTS]:
                lines.append(f"      {shown_name(parent)}/  ({inside.line(now)})")
            if len(ranked) > FORM_PARENTS:
                lines.append(f"      and {len(ranked) - FORM_PARENTS} more folders")
        if covered:
            lines.append(f"  ({covered} more path(s) named lie inside these folders and go with them)")
        if mode == "quarantine":
            lines += ["", "They can be restored with restore_paths until the quarantine is purged. Move them?"]
        else:
            lines += ["", "This cannot be undone. Delete them?"]
        return "\n".join(lines)


def question(seen: Sequence[SeenPath], *, covered: int = 0, now: float | None = None, mode: str = "delete") -> str:
    """The form's text for paths held in memory (a plan's rows go through `FormQuestion` a chunk at a time)."""
    form = FormQuestion()
    form.first(seen)
    form.second(seen)
    return form.text(covered=covered, now=now, mode=mode)
