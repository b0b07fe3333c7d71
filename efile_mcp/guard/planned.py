"""Finishing a dry run that planned something: the quota it frees, its token and its audit record.

One place for both ways a plan is made: held whole and saved at once (removal.py: typed paths, folder-capable
selections) and planned as it is found across calls (selection.py: file selections). The answer around it
(next step, resume) stays with each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..models.results import QuotaInfo, RemoveSummary, Selection
from .audit import AuditLog
from .paths import MAX_PATH_BYTES
from .ports import RemoveMode
from .requests import REFUSED_PATHS_AUDITED, TOOL, selection_key
from .sealing import ConfirmationSigner
from .seen import Plan, SeenPath


class QuotaFreed:
    """What a plan frees under each quota entry (a deletion frees what it removes below the entry's path; a
    quarantine frees nothing until it is purged), summed a batch of rows at a time."""

    def __init__(self, quota: Sequence[QuotaInfo]) -> None:
        self.quota = list(quota)
        self._prefixes = [entry.path.rstrip("/") + "/" for entry in self.quota]
        self._freed = [0] * len(self.quota)

    def add(self, rows: Iterable[SeenPath]) -> None:
        if not self.quota:
            return
        for seen in rows:
            for index, prefix in enumerate(self._prefixes):
                if not self.quota[index].path or seen.path.startswith(prefix):
                    self._freed[index] += seen.size

    def before_after(self, mode: RemoveMode) -> list[dict[str, Any]]:
        """Each quota entry before -> after the plan, as the plan keeps it for the review page."""
        return [
            {
                "path": entry.path,
                "limit_bytes": entry.limit_bytes,
                "used_bytes": entry.used_bytes,
                "after_bytes": entry.used_bytes if mode == "quarantine" else max(0, entry.used_bytes - freed),
            }
            for entry, freed in zip(self.quota, self._freed, strict=True)
        ]


def seal(signer: ConfirmationSigner, plan: Plan, summary: RemoveSummary) -> tuple[str, str]:
    """The token of a saved plan (bound to its digest, count and expiry) and its expiry as ISO time."""
    token = signer.seal_digest(plan.plan_id, plan.digest, plan.count, plan.expires_at, total_size=summary.total_size)
    return token, signer.unseal(token).expires_at_iso


async def audit_plan(
    audit: AuditLog,
    *,
    plan_id: str | None,
    mode: RemoveMode,
    select: Selection | None,
    removable: list[str] | None,
    count: int,
    summary: RemoveSummary,
    exceptions: Sequence[Sequence[str]],
) -> None:
    """The dry run's `plan` record (a plan of more paths than a line holds lists them in `plan_paths` lines after
    it: `removable` None). `plan_id` None: nothing was planned."""
    await audit.write(
        "plan",
        tool=TOOL,
        dry_run=True,
        decision="planned" if plan_id else "nothing_to_remove",
        plan_id=plan_id,
        mode=mode,
        select=selection_key(select) if select is not None else None,
        removable=removable,
        removable_count=count,
        summary=summary.model_dump(exclude_none=True),
        exceptions=[
            {"path": path[:MAX_PATH_BYTES], "status": status, "reason": reason[:300]}
            for path, status, reason in exceptions[:REFUSED_PATHS_AUDITED]
        ],
    )
