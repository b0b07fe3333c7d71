"""Clocks the tests move by hand: time is an input, never something a test waits for."""

from __future__ import annotations

import time


class ManualClock:
    """A clock that moves only when a test moves it (`clock.now += 6`).

    Starts at the real time by default, so it can stand in for a wall clock (token expiry, sealed
    plans, the sandbox's sign-in tokens) next to dates made elsewhere.
    """

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SleepingClock(ManualClock):
    """A monotonic clock that only sleeping moves: retry waits are counted, never waited for.

    Pass `clock` as the clock and `clock.sleep` as the sleep; `slept` lists every wait asked for.
    """

    def __init__(self, now: float = 1000.0) -> None:
        super().__init__(now)
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
