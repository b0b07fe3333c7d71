"""`efile-mcp approve`: the person decides in their own terminal (an SSH session on a login node).

Lists the removal plans of this user's state store that wait for a decision, shows one's summary
(counts, bytes, mode, the largest paths, what was refused or missing) and asks y/N on the TTY. The
answer is recorded as a `terminal` decision (`StateStore.decide`), where the guard's removal reads it;
the agent's next execution call with its token then proceeds (or, after a no, is refused).

An adapter with no policy. It talks to the controlling terminal itself (/dev/tty), never to stdin and
stdout: without one (a pipe, a service, an agent's shell tool started without a terminal) it refuses in
one line, so that piping `y` into it answers nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..guard.ports import Decision, DecisionKind, RemoveMode
from ..guard.report import human_age, shown_name
from ..guard.seen import Plan, load_header, plan_rows
from ..models.units import human_size
from .view import PlanView

if TYPE_CHECKING:
    from ..guard.store import StateStore

LARGEST_SHOWN = 8
MODE_TEXT = {
    "quarantine": "move to quarantine (restorable: into the .efile-quarantine folder of its root)",
    "delete": "DELETE PERMANENTLY (cannot be undone)",
}


class Terminal:
    """The person's TTY: read a line, write text. Tests hand in a pseudo-terminal's ends."""

    def __init__(self, reader: TextIO, writer: TextIO) -> None:
        self.reader = reader
        self.writer = writer

    def say(self, text: str = "") -> None:
        self.writer.write(text + "\n")
        self.writer.flush()

    def close(self) -> None:
        for stream in (self.reader, self.writer):
            try:
                stream.close()
            except OSError:
                pass

    def ask(self, prompt: str) -> str:
        self.writer.write(prompt)
        self.writer.flush()
        line = self.reader.readline()
        if not line:
            raise EOFError
        return line.strip()


def open_tty() -> Terminal | None:
    """The controlling terminal itself (/dev/tty, CONIN$/CONOUT$ on Windows), whatever stdin and stdout are;
    None when the process has none (a pipe, a service, an agent's shell tool started without a terminal)."""
    try:
        if os.name == "nt":  # pragma: no cover - the login nodes this is for are Linux
            return Terminal(open("CONIN$", encoding="utf-8"), open("CONOUT$", "w", encoding="utf-8"))
        fd = os.open("/dev/tty", os.O_RDWR | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None
    reader = os.fdopen(fd, "r", encoding="utf-8", errors="replace")
    writer = os.fdopen(os.dup(fd), "w", encoding="utf-8", errors="replace")
    return Terminal(reader, writer)


def describe(plan: Plan | PlanView, now: float) -> list[str]:
    """A plan's summary, as lines for the terminal: from its view (`PlanView.load(..., ordered=False)`: the
    rows read a chunk at a time), or from a plan whose paths are in memory."""
    view = plan if isinstance(plan, PlanView) else PlanView.of(plan, now)
    plan = view.plan
    totals = view.totals()
    at_least = "at least " if totals.get("lower_bound") else ""
    count = int(totals.get("would_remove", view.count))
    folders = int(totals.get("folder_count", 0))
    lines = [
        f"Plan {plan.plan_id}: {MODE_TEXT.get(plan.mode, plan.mode)}",
        f"  {count:,} path{'s' if count != 1 else ''} ({folders:,} folder{'s' if folders != 1 else ''}), "
        f"{at_least}{human_size(int(totals.get('total_size', 0)))}, "
        f"{at_least}{int(totals.get('file_count', 0)):,} files in all",
    ]
    newest = view.root.newest
    if newest is not None:
        lines.append(f"  newest change {human_age(newest, now)}")
    lines.append(f"  planned {human_age(plan.created_at, now) or 'just now'}; expires {_until(plan.expires_at, now)}")
    for quota in plan.quota:
        used, after, limit = quota.get("used_bytes"), quota.get("after_bytes"), quota.get("limit_bytes")
        if isinstance(used, int | float) and isinstance(after, int | float):
            of = f" of {human_size(int(limit))}" if isinstance(limit, int | float) else ""
            lines.append(
                f"  quota {shown_name(str(quota.get('path', '')))}: {human_size(int(used))} -> {human_size(int(after))}{of}"
            )
    lines.append("  largest:")
    for row in view.largest(LARGEST_SHOWN):
        what = f"folder, {row['files']:,} files" if row["kind"] == "directory" else row["kind"]
        lines.append(f"    {row['size_text']:>10}  {row['shown']}  ({what}{', ' + row['age'] if row['age'] else ''})")
    if view.count > LARGEST_SHOWN:
        lines.append(f"    … and {view.count - LARGEST_SHOWN:,} more")
    if plan.exceptions:
        refused = sum(1 for row in plan.exceptions if len(row) > 1 and row[1] == "refused")
        lines.append(
            f"  {len(plan.exceptions):,} path(s) not planned ({refused:,} refused, "
            f"{len(plan.exceptions) - refused:,} missing or other): they will not be touched"
        )
    return lines


def _until(epoch: float, now: float) -> str:
    minutes = int(max(0.0, epoch - now) // 60)
    return f"in {minutes} minute{'s' if minutes != 1 else ''}" if minutes else "in under a minute"


async def pending_plans(store: StateStore, now: float) -> list[Plan]:
    """The headers of the plans waiting for a decision (their rows stay in the store)."""
    plans = []
    for plan_id in await store.pending(now):
        plan = await load_header(store, plan_id)
        if plan is not None:
            plans.append(plan)
    return plans


async def total_size(store: StateStore, plan: Plan) -> int:
    """The bytes a plan removes: its dry run's total, or its rows' sizes summed a chunk at a time."""
    if isinstance(plan.summary.get("total_size"), int):
        return int(plan.summary["total_size"])
    total = 0
    async for rows in plan_rows(store, plan):
        total += sum(seen.size for seen in rows)
    return total


async def approve(
    store: StateStore,
    terminal: Terminal | None,
    *,
    plan_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """The `efile-mcp approve` conversation. Returns the exit status: 0 decided (or nothing to decide)."""
    if terminal is None:
        sys.stderr.write(
            "efile-mcp approve: asks the person on their terminal, and this process has none; run it yourself in "
            "a terminal (an SSH session), not through a pipe or an agent\n"
        )
        return 2
    now = clock()
    plans = await pending_plans(store, now)
    if plan_id is not None:
        plans = [p for p in plans if p.plan_id == plan_id]
        if not plans:
            terminal.say(f"No plan {plan_id} waits for a decision (decided, carried out, expired, or unknown).")
            return 1
    if not plans:
        terminal.say("No removal waits for your decision.")
        return 0
    if len(plans) == 1:
        chosen = plans[0]
    else:
        terminal.say(f"{len(plans)} removals wait for your decision:")
        for number, plan in enumerate(plans, 1):
            try:
                size = human_size(await total_size(store, plan))
            except LookupError:  # its rows expired meanwhile
                size = "size unknown"
            terminal.say(
                f"  {number}. plan {plan.plan_id}: {plan.mode}, {plan.count:,} paths, {size}, "
                f"planned {human_age(plan.created_at, now) or 'just now'}"
            )
        try:
            answer = terminal.ask(f"Which one [1-{len(plans)}, Enter for none]? ")
        except EOFError:
            return 1
        if not answer.isdigit() or not 1 <= int(answer) <= len(plans):
            terminal.say("Nothing decided.")
            return 1
        chosen = plans[int(answer) - 1]
    try:
        view = await PlanView.load(store, chosen, now, ordered=False)
    except LookupError:
        terminal.say(f"Plan {chosen.plan_id} expired meanwhile: nothing to decide.")
        return 1
    terminal.say()
    for line in describe(view, now):
        terminal.say(line)
    terminal.say()
    verb = "Delete these permanently" if chosen.mode == "delete" else "Move these to quarantine"
    try:
        answer = terminal.ask(f"{verb}? Type y to approve, n to decline, Enter to leave it undecided [y/n/N]: ")
    except EOFError:
        terminal.say("Nothing decided.")
        return 1
    answer = answer.lower()
    if answer not in ("y", "yes", "n", "no"):
        terminal.say("Nothing decided: the plan still waits (the agent's call may still ask you elsewhere).")
        return 1
    kind: DecisionKind = "approved" if answer in ("y", "yes") else "declined"
    mode: RemoveMode | None = None
    if kind == "approved":
        mode = "quarantine" if chosen.mode == "quarantine" else "delete"
    decision = Decision(kind=kind, channel="terminal", mode=mode, at=clock())
    after = await store.decide(chosen.plan_id, chosen.expires_at, decision)
    if after.decision != decision:
        standing = after.decision
        how = f"{standing.kind} through {standing.channel}" if standing is not None else after.status
        terminal.say(f"Not recorded: the plan was already {how}.")
        return 1
    if kind == "approved":
        terminal.say("Approved. The agent's next call with its confirmation token carries it out.")
    else:
        terminal.say("Declined. Nothing will be removed; the agent's token is spent.")
    return 0


def run(state_url: str | None, state_dir: Path | None, plan_id: str | None) -> int:
    """Open this user's state store (EFILE_STATE_URL / EFILE_STATE_DIR) and talk on the controlling terminal.

    Raises ConfigError for a store it cannot open."""
    import anyio

    from ..guard.store import open_store

    store = open_store(state_url, state_dir)

    async def main() -> int:
        terminal = open_tty()
        try:
            return await approve(store, terminal, plan_id=plan_id)
        finally:
            await store.aclose()
            if terminal is not None:
                terminal.close()

    return anyio.run(main)
