"""The report shaper alone (guard/report.py): what an agent's answer holds whatever the number of paths, and the
text the person reads before anything is deleted. No server, no client: plain values in, values out."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from efile_mcp.guard.report import (
    EXCEPTIONS_SHOWN,
    FORM_PARENTS,
    FORM_PATHS,
    FULL_KEPT,
    LARGEST_SHOWN,
    PARENTS_SHOWN,
    REASON_CHARS,
    Detail,
    Tally,
    human_age,
    item_of,
    question,
    shown_name,
)
from efile_mcp.guard.seen import SeenPath
from efile_mcp.models.results import ITEMS_LISTED_MAX, RemoveItem, RemovePathsResult, RemoveSummary
from efile_mcp.models.times import iso_time

NOW = 1_800_000_000.0
DAY = 86400.0


def a_file(path: str, size: int = 10, age_days: float = 1.0) -> SeenPath:
    return SeenPath(path, "file", size, NOW - age_days * DAY, size)


def a_folder(path: str, size: int, files: int, *, complete: bool = True, newest_days: float = 1.0) -> SeenPath:
    return SeenPath(path, "directory", size, NOW - 90 * DAY, 4096, files, NOW - newest_days * DAY, complete)


def summarise(
    listed: Sequence[RemoveItem], *, requested: int, covered: int, counted: Sequence[SeenPath]
) -> RemoveSummary:
    """A tally fed `listed` (counts per status) and `counted` (sizes of what the removal really deletes)."""
    tally = Tally("summary")
    for item in listed:
        tally.add(item)
    for seen in counted:
        tally.count_removed(seen)
    return tally.summary(requested=requested, covered=covered)


def shape(result: RemovePathsResult, listed: Sequence[RemoveItem], detail: Detail) -> RemovePathsResult:
    """`result` with a tally of `listed` put into it as the answer shows it."""
    tally = Tally(detail)
    for item in listed:
        tally.add(item)
    return tally.shape(result)


def empty_result() -> RemovePathsResult:
    return RemovePathsResult(dry_run=True, summary=RemoveSummary(requested=0, distinct=0), next_step="")


def items(n: int, status: str = "would_remove", parent: str = "/home/u/scratch") -> list[RemoveItem]:
    return [RemoveItem(path=f"{parent}/f{i:05d}", status=status, size=i) for i in range(n)]  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- item_of, summarise


def test_an_item_says_what_was_seen_of_a_file_and_of_a_folder() -> None:
    file_item = item_of(a_file("/h/a.log", size=7, age_days=2))
    assert (file_item.type, file_item.size, file_item.file_count) == ("file", 7, None)
    assert file_item.newest_modified == iso_time(NOW - 2 * DAY) and file_item.lower_bound is None
    folder_item = item_of(a_folder("/h/run", 5000, 12, complete=False, newest_days=3), "removed", task_id="t1")
    assert (folder_item.status, folder_item.file_count, folder_item.task_id) == ("removed", 12, "t1")
    assert folder_item.newest_modified == iso_time(NOW - 3 * DAY)  # the tree's newest, not the folder's own
    assert folder_item.lower_bound is True  # not read whole: the counts are "at least"


def test_the_summary_counts_every_status_and_sums_only_what_is_removed() -> None:
    listed = [*items(3), *items(2, "refused", "/h/x"), *items(1, "missing", "/h/y")]
    counted = [a_file("/h/a", 100, age_days=5), a_folder("/h/run", 900, 30, newest_days=2)]
    summary = summarise(listed, requested=9, covered=2, counted=counted)
    assert (summary.would_remove, summary.refused, summary.missing) == (3, 2, 1)
    assert (summary.requested, summary.distinct, summary.covered) == (9, 8, 2)
    assert (summary.total_size, summary.file_count, summary.folder_count) == (1000, 30, 1)
    assert summary.newest_modified == iso_time(NOW - 2 * DAY) and summary.lower_bound is None
    partial = summarise(listed, requested=6, covered=0, counted=[a_folder("/h/big", 1, 1, complete=False)])
    assert partial.lower_bound is True
    nothing = summarise([], requested=0, covered=0, counted=[])
    assert (nothing.total_size, nothing.newest_modified) == (0, None)


# ---------------------------------------------------------------------------------------------- shape


def test_up_to_the_listing_limit_every_item_is_listed_and_nothing_else() -> None:
    listed = items(ITEMS_LISTED_MAX)
    shaped = shape(empty_result(), listed, "auto")
    assert shaped.items == listed
    assert shaped.exceptions is shaped.largest is shaped.by_parent is None


def test_above_the_limit_the_answer_is_a_summary_with_the_exceptions_first() -> None:
    listed = [
        *items(ITEMS_LISTED_MAX, parent="/h/ok"),
        *items(3, "missing", "/h/gone"),
        *items(EXCEPTIONS_SHOWN, "refused", "/h/no"),
        *items(2, "changed", "/h/moved"),
    ]
    shaped = shape(empty_result(), listed, "auto")
    assert shaped.items is None
    assert shaped.exceptions is not None and len(shaped.exceptions) == EXCEPTIONS_SHOWN
    assert {i.status for i in shaped.exceptions} == {"refused"}  # refused first, then changed, failed, missing
    assert shaped.exceptions_not_shown == 5
    assert shaped.largest is not None and len(shaped.largest) == LARGEST_SHOWN
    assert [i.size for i in shaped.largest] == sorted((i.size or 0 for i in listed), reverse=True)[:LARGEST_SHOWN]
    assert shaped.by_parent is not None and shaped.by_parent[0].parent == "/h/ok"  # most bytes first
    assert shaped.by_parent[0].count == ITEMS_LISTED_MAX


def test_a_long_reason_is_cut_in_the_summary_but_kept_whole_in_full_detail() -> None:
    long = RemoveItem(path="/h/no/x", status="refused", reason="r" * 1000)
    many = [*items(ITEMS_LISTED_MAX), long]
    (shown,) = shape(empty_result(), many, "auto").exceptions or []
    assert shown.reason is not None and len(shown.reason) == REASON_CHARS and shown.reason.endswith("…")
    full = shape(empty_result(), many, "full").items or []
    assert full[-1].reason == "r" * 1000


def test_detail_asks_for_the_other_form_whatever_the_count() -> None:
    assert shape(empty_result(), items(3), "summary").items is None
    full = shape(empty_result(), items(2000), "full")
    # More than an answer holds are kept to choose from (tools/output.py fits them), never every one of a million.
    assert len(full.items or []) == FULL_KEPT and full.items_not_shown == 2000 - FULL_KEPT


def test_folders_are_grouped_by_parent_and_only_the_heaviest_are_named() -> None:
    listed = [
        RemoveItem(path=f"/h/p{g:02d}/f{i}", status="would_remove", size=g + 1) for g in range(20) for i in range(3)
    ]
    groups = shape(empty_result(), listed, "auto").by_parent or []
    assert [g.parent for g in groups] == [f"/h/p{g:02d}" for g in range(19, 19 - PARENTS_SHOWN, -1)]
    assert all(g.count == 3 for g in groups)


@pytest.mark.parametrize("count", [1_000, 100_000])
def test_a_summary_answer_stays_a_few_kb_whatever_the_number_of_paths(count: int) -> None:
    listed = [
        RemoveItem(path=f"/public/home/u/scratch/run-{i % 97:02d}/out-{i:06d}.dat", status=s, size=i, reason=r)
        for i in range(count)
        for s, r in [("refused", "x" * 500) if i % 10 == 0 else ("would_remove", None)]
    ]
    shaped = shape(empty_result(), listed, "auto")
    assert len(json.dumps(shaped.model_dump(exclude_none=True))) < 12_000


# ---------------------------------------------------------------------------------------------- what the person reads


@pytest.mark.parametrize(
    ("age", "said"),
    [
        (None, None),
        (0.0, "just now"),
        (59.0, "just now"),
        (60.0, "1 minute ago"),
        (7200.0, "2 hours ago"),
        (3 * DAY, "3 days ago"),
    ],
)
def test_ages_are_said_in_words(age: float | None, said: str | None) -> None:
    assert human_age(None if age is None else NOW - age, NOW) == said


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/h/scratch/run-001", "/h/scratch/run-001"),
        ("/h/数据/结果.txt", "/h/数据/结果.txt"),
        ("/h/d\u0430ta", "/h/d\\u{0430}ta"),  # Cyrillic а among Latin letters
        ("/h/data ", "/h/data\\u{0020}"),  # a trailing blank
        ("/h/a\u200bb", "/h/a\\u{200b}b"),  # zero width space
        ("/h/\u202etxt.exe", "/h/\\u{202e}txt.exe"),  # right-to-left override
        ("/h/   ", "/h/\\u{0020}\\u{0020}\\u{0020}"),  # a name of only blanks
    ],
)
def test_the_form_writes_what_could_pass_for_something_else_as_visible_escapes(path: str, shown: str) -> None:
    assert shown_name(path) == shown


def test_the_question_lists_folders_first_then_the_biggest_and_ends_with_what_cannot_be_undone() -> None:
    seen = [a_file("/h/small.log", 5), a_folder("/h/run", 3 * 1024**3, 1200, newest_days=2), a_file("/h/big.dat", 900)]
    text = question(seen, now=NOW)
    lines = text.splitlines()
    assert lines[0] == (
        "An AI agent asks to permanently delete 1 folder and 2 files, 3.0 GiB, 1200 files in all, "
        "newest changed 1 day ago on your SCNet storage:"
    )
    assert [line.split("  (")[0].strip() for line in lines[2:5]] == ["/h/run", "/h/big.dat", "/h/small.log"]
    assert lines[2] == "  /h/run  (folder, 3.0 GiB, 1200 files)"
    assert lines[-1] == "This cannot be undone. Delete them?"
    assert question(list(reversed(seen)), now=NOW) == text  # the same question for the same plan, every round


def test_a_folder_not_read_whole_is_at_least_its_size() -> None:
    text = question([a_folder("/h/huge", 2048, 10, complete=False)], now=NOW)
    assert "at least 2.0 KiB" in text and "(folder, at least 2.0 KiB, 10 files)" in text


def test_beyond_the_listed_paths_the_rest_is_told_by_folder() -> None:
    seen = [a_file(f"/h/p{i % 12:02d}/f{i:03d}", 10) for i in range(FORM_PATHS + 40)]  # 5 a folder
    lines = question(seen, covered=3, now=NOW).splitlines()
    listed = [line for line in lines if line.startswith("  /h/")]
    assert len(listed) == FORM_PATHS
    assert "  … and 40 more: 40 files, 400 B, newest changed 1 day ago, in" in lines
    groups = [line for line in lines if line.startswith("      /h/")]
    assert len(groups) == FORM_PARENTS and "      and 3 more folders" in lines  # p04 to p11 hold the rest
    assert "  (3 more path(s) named lie inside these folders and go with them)" in lines


def test_a_quarantine_question_says_the_paths_can_be_restored_and_never_that_nothing_can_be_undone() -> None:
    seen = [a_folder("/h/run", 2048, 3)]
    moved = question(seen, now=NOW, mode="quarantine")
    assert moved.splitlines()[0].startswith(
        "An AI agent asks to move into the quarantine (restorable until it is purged) "
    )
    assert (
        moved.splitlines()[-1] == "They can be restored with restore_paths until the quarantine is purged. Move them?"
    )
    assert "cannot be undone" not in moved and "permanently" not in moved
    assert moved.splitlines()[2:-2] == question(seen, now=NOW).splitlines()[2:-2]  # the same paths, the same words
