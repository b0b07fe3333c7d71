"""TEMPORARY in-process stand-in for guard/store.py while it is being written (deleted when it lands)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal


class MemoryStore:
    shared = False
    description = "memory (interim)"

    def __init__(self) -> None:
        self.plans: dict[str, tuple[bytes, float]] = {}
        self.states: dict[str, str] = {}

    async def save_plan(self, plan_id: str, data: bytes, expires_at: float) -> None:
        self.plans[plan_id] = (data, expires_at)

    async def load_plan(self, plan_id: str) -> bytes | None:
        found = self.plans.get(plan_id)
        return found[0] if found and found[1] > time.time() else None

    async def mark_asked(self, plan_id: str, expires_at: float) -> bool:
        if self.states.get(plan_id) == "spent":
            return False
        self.states[plan_id] = "asked"
        return True

    async def redeem(self, plan_id: str, expires_at: float, *, person_confirmed: bool) -> Literal["redeemed", "spent", "asked"]:
        state = self.states.get(plan_id)
        if state == "spent":
            return "spent"
        if state == "asked" and not person_confirmed:
            return "asked"
        self.states[plan_id] = "spent"
        return "redeemed"

    async def spend(self, plan_id: str, expires_at: float) -> None:
        self.states[plan_id] = "spent"

    async def aclose(self) -> None:
        pass


def open_store(url: str | None, state_dir: Path | None, **_: object) -> MemoryStore:
    return MemoryStore()
