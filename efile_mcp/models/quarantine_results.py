"""Tool output models of the quarantine: what storage_status says of it, and what restore_paths answers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from . import results
from .results import ITEMS_LISTED_MAX, ResultModel, Visible

RestoreStatus = Literal["restored", "conflict", "missing", "failed"]


class QuarantinedPlan(ResultModel):
    plan_id: str
    root: str = Field(description="The allowed root whose quarantine folder holds this plan's entries.")
    folder: str = Field(description="The plan's folder: <root>/.efile-quarantine/<plan_id>.")
    quarantined_at: str | None = Field(default=None, description="When it was quarantined (ISO 8601).")
    expires_at: str | None = Field(
        default=None, description="When `efile-mcp purge` may delete it for good (ISO 8601)."
    )
    expired: bool = False
    count: int = Field(description="Paths quarantined by the plan (a folder counts once).")
    size: int = Field(description="Bytes they hold (regular files); they still count against the quota.")
    exact: bool = Field(
        default=True, description="False when count and size were measured by a walk that stopped early."
    )


class QuarantineStatus(ResultModel):
    plans: list[QuarantinedPlan] = Field(
        description=f"The plans in quarantine, newest first (at most {ITEMS_LISTED_MAX})."
    )
    plan_count: int
    total_count: int
    total_size: int = Field(description="Bytes in quarantine: they count against the quota until purged.")
    days: int = Field(
        description="Plans older than this many days are purged by `efile-mcp purge` (EFILE_QUARANTINE_DAYS)."
    )
    error: str | None = Field(default=None, description="Why some quarantine folder could not be read.")


class RestoreItem(ResultModel):
    path: Visible = Field(description="Where it was, and goes back to.")
    status: RestoreStatus = Field(
        description="restored | conflict (something is at the path again: left in quarantine) | missing (not in "
        "the plan's quarantine) | failed (see reason; it stays in quarantine)."
    )
    reason: str | None = None
    quarantined_as: Visible | None = Field(default=None, description="Where it lies in quarantine.")


class RestoreSummary(ResultModel):
    requested: int
    restored: int = 0
    conflict: int = 0
    missing: int = 0
    failed: int = 0


class RestorePathsResult(ResultModel):
    plan_id: str
    summary: RestoreSummary
    items: list[RestoreItem] | None = Field(default=None, description=f"Every item, up to {ITEMS_LISTED_MAX}.")
    exceptions: list[RestoreItem] | None = Field(
        default=None, description="Above that: the conflicts, missing and failed items (capped)."
    )
    next_step: str


# storage_status's answer names QuarantineStatus (results.py cannot import this module at its top: a cycle).
results.StorageStatusResult.model_rebuild(_types_namespace={"QuarantineStatus": QuarantineStatus})
