"""The product's promise, checked against the sandbox's own record of what it received and deleted.

No path is deleted that a dry run did not show and a confirmation did not cover; every path of an
executed request ends in exactly one known state; the audit log says so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from efile_mcp.sandbox import RunningSandbox

from .conftest import audit_lines

KNOWN = {"removed", "queued", "missing", "failed", "refused"}

#: Figures for the closing note, printed at the end of the run: faults injected, paths driven, checks.
FIGURES: Counter[str] = Counter()


def tree(root: Path) -> set[Path]:
    return {path.relative_to(root) for path in root.rglob("*")}


@dataclass
class Report:
    """What a check saw, for the closing figures."""

    paths: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    resent: int = 0


def check_invariants(
    sandbox: RunningSandbox,
    *,
    confirmed: list[str],
    before: set[Path],
    items: list[dict[str, Any]] | None,
    audit_path: Path,
    unknown_outcome_allowed: bool = False,
) -> Report:
    record = sandbox.sandbox
    home = sandbox.home
    confirmed_set = set(confirmed)
    report = Report(paths=len(confirmed))
    FIGURES["invariant checks"] += 1
    FIGURES["paths checked"] += len(confirmed)

    # 1. Nothing was sent that was not confirmed.
    stray = set(record.received_remove_paths) - confirmed_set
    assert not stray, f"sent without confirmation: {sorted(stray)[:5]}"

    # 2. No path was accepted twice, unless an attempt with an unknown outcome was retried.
    accepted = Counter(record.accepted_remove_paths)
    twice = {path: n for path, n in accepted.items() if n > 1}
    report.resent = sum(n - 1 for n in twice.values())
    FIGURES["paths accepted again after an unknown outcome"] += report.resent
    if not unknown_outcome_allowed:
        assert not twice, f"accepted more than once: {list(twice.items())[:5]}"

    # 3. Nothing outside the confirmed subtrees was deleted (by us: vanish faults delete on purpose).
    confirmed_rel = {Path(p.removeprefix(home + "/")) for p in confirmed}
    vanished_rel = {Path(p.removeprefix(home + "/")) for p in record.vanished_paths}
    gone = before - tree(sandbox.root)
    outside = {p for p in gone if not any(p == c or c in p.parents for c in confirmed_rel | vanished_rel)}
    assert not outside, f"deleted without confirmation: {sorted(outside)[:5]}"

    # 4. The audit's execution line accounts for every confirmed path exactly once, in a known state.
    executions = [line for line in audit_lines(audit_path) if line["event"] == "execution"]
    assert executions, "no execution line in the audit log"
    audited = executions[-1]["items"]
    assert sorted(item["path"] for item in audited) == sorted(confirmed), "audit does not account for every path"
    statuses = {item["path"]: item["status"] for item in audited}
    assert set(statuses.values()) <= KNOWN
    for item in audited:
        if item["status"] == "failed":
            assert item.get("error_code") and item.get("reason"), item
    report.statuses = Counter(statuses.values())

    # 5. The tool result (when the call returned one) says the same for every path it lists (an answer lists a
    #    bounded number: the audit has them all), and the disk agrees with every audited path.
    if items is not None:
        listed = {item["path"]: item["status"] for item in items}
        assert listed, "the answer lists no item at all"
        assert {path: statuses.get(path) for path in listed} == listed, "the answer and the audit disagree"
        tasks = {item["path"]: item.get("task_id") for item in items}
        for item in audited:
            on_disk = sandbox.root / item["path"].removeprefix(home + "/")
            if item["status"] in ("removed", "missing"):
                assert not on_disk.exists(), f"{item['status']} but still on disk: {item['path']}"
            if item["status"] == "queued":
                assert (item.get("task_id") or tasks.get(item["path"])) in record.tasks
            if item["status"] == "failed" and not (item.get("error_code") or "").startswith("outcome_unknown"):
                # A refusal or failure the API stated: the server did not delete it.
                assert on_disk.exists() or item["path"] in record.vanished_paths, item
    return report
