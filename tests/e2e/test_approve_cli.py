"""`efile-mcp approve`: the person decides a pending removal on their own terminal (a pseudo-terminal here).

Each test runs the real command as a child process on a pty, answers its questions, and reads the
decision back from the state store it shares with the server.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from efile_mcp.guard.seen import Plan, SeenPath
from efile_mcp.guard.store import StateStore, open_store

from ..conftest import child_env, run_cli

HOME = "/public/home/alice"


def plan_of(plan_id: str, count: int, *, mode: str = "delete", now: float | None = None) -> Plan:
    now = time.time() if now is None else now
    paths = [
        SeenPath(f"{HOME}/scratch/run/out-{i:04d}.dat", "file", 3 * 2**20 + i, now - 86400 * 3, 3 * 2**20 + i)
        for i in range(count - 1)
    ]
    paths.append(
        SeenPath(
            f"{HOME}/scratch/big",
            "directory",
            5 * 2**30,
            now - 86400 * 90,
            4096,
            file_count=1234,
            newest=now - 86400 * 60,
        )
    )
    return Plan(
        plan_id=plan_id,
        expires_at=float(int(now + 900)),
        paths=paths,
        created_at=now - 30,
        mode=mode,
        exceptions=[[f"{HOME}/.ssh", "refused", "protected name"]],
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def store(state_dir: Path) -> AsyncIterator[StateStore]:
    opened = open_store(None, state_dir)
    yield opened
    await opened.aclose()


async def pending(store: StateStore, plan: Plan) -> Plan:
    await store.save_plan(plan.plan_id, plan.to_bytes(), plan.expires_at)
    return plan


class OnATerminal:
    """`efile-mcp ARGS approve` in a child whose controlling terminal is a fresh pseudo-terminal (pty.fork):
    what a person running it in an SSH session has. The test reads what it shows and types lines."""

    def __init__(self, state_dir: Path | None, *args: str, env: dict[str, str] | None = None) -> None:
        environment = child_env(
            TERM="dumb", **({"EFILE_STATE_DIR": str(state_dir)} if state_dir else {}), **(env or {})
        )
        argv = [sys.executable, "-m", "efile_mcp", *args, "approve"]
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (nothing else runs between fork and exec)
            try:
                os.execve(sys.executable, argv, environment)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.seen = b""
        self.status: int | None = None

    def read_until(self, text: str | None, timeout: float = 60) -> None:
        """Read until `text` shows (None: until the child closes the terminal)."""
        deadline = time.monotonic() + timeout
        while text is None or text.encode() not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {text!r}; the terminal shows:\n{self.shown}")
            if not select.select([self.fd], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                if text is None:
                    return
                raise AssertionError(f"the command ended before showing {text!r}:\n{self.shown}")
            self.seen += chunk

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    @property
    def shown(self) -> str:
        return self.seen.decode(errors="replace").replace("\r\n", "\n")

    def wait(self) -> int:
        self.read_until(None)
        _, status = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


def on_a_terminal(
    state_dir: Path | None, replies: list[tuple[str, str]], *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run `efile-mcp approve` on a pseudo-terminal and answer each prompt (the text it waits for, then the
    line to type). Returns the exit status and everything it showed."""
    terminal = OnATerminal(state_dir, *args, env=env)
    try:
        for prompt, line in replies:
            terminal.read_until(prompt)
            terminal.type(line)
        return terminal.wait(), terminal.shown
    finally:
        terminal.close()


async def test_approve_on_a_terminal_records_the_persons_yes(store: StateStore, state_dir: Path) -> None:
    plan = await pending(store, plan_of("aaaa1111bbbb2222cccc3333", 40))
    status, shown = on_a_terminal(state_dir, [("[y/n/N]: ", "y")])
    assert status == 0, shown
    assert f"Plan {plan.plan_id}: DELETE PERMANENTLY" in shown
    assert "40 paths (1 folder), 5.1 GiB, 1,273 files in all" in shown, "counts and bytes in binary units"
    assert "5.0 GiB  /public/home/alice/scratch/big  (folder, 1,234 files, 60 days ago)" in shown, "the largest first"
    assert "1 path(s) not planned (1 refused" in shown
    assert "Approved." in shown
    state = await store.plan_state(plan.plan_id)
    assert state.status == "approved" and state.decision is not None
    assert (state.decision.kind, state.decision.channel, state.decision.mode) == ("approved", "terminal", "delete")
    assert await store.pending(time.time()) == []


async def test_n_declines_and_enter_leaves_the_plan_waiting(store: StateStore, state_dir: Path) -> None:
    plan = await pending(store, plan_of("dddd1111eeee2222ffff3333", 3, mode="quarantine"))
    status, shown = on_a_terminal(state_dir, [("[y/n/N]: ", "")])
    assert status == 1 and "Nothing decided" in shown
    assert (await store.plan_state(plan.plan_id)).pending

    status, shown = on_a_terminal(state_dir, [("Move these to quarantine? ", "n")])
    assert status == 0 and "Declined." in shown, shown
    state = await store.plan_state(plan.plan_id)
    assert state.status == "declined" and state.decision is not None and state.decision.channel == "terminal"


async def test_several_pending_plans_are_listed_and_one_is_chosen(store: StateStore, state_dir: Path) -> None:
    first = await pending(store, plan_of("1111aaaa1111aaaa1111aaaa", 5))
    second = await pending(store, plan_of("2222bbbb2222bbbb2222bbbb", 7))
    status, shown = on_a_terminal(state_dir, [("Which one [1-2", "2"), ("[y/n/N]: ", "y")])
    assert status == 0, shown
    assert f"plan {first.plan_id}" in shown and f"plan {second.plan_id}" in shown
    assert (await store.plan_state(first.plan_id)).pending
    assert (await store.plan_state(second.plan_id)).status == "approved"


async def test_a_plan_decided_elsewhere_meanwhile_keeps_that_decision(store: StateStore, state_dir: Path) -> None:
    """The person answered on the review page while the terminal was asking: the first decision stands."""
    from efile_mcp.guard.ports import Decision

    plan = await pending(store, plan_of("3333cccc3333cccc3333cccc", 4))
    terminal = OnATerminal(state_dir)
    try:
        terminal.read_until("[y/n/N]: ")
        await store.decide(plan.plan_id, plan.expires_at, Decision("declined", "review_page", None, time.time()))
        terminal.type("y")
        assert terminal.wait() == 1
        assert "Not recorded: the plan was already declined through review_page" in terminal.shown
    finally:
        terminal.close()
    state = await store.plan_state(plan.plan_id)
    assert state.decision is not None and state.decision.channel == "review_page"


async def test_without_a_terminal_it_refuses_in_one_line_and_decides_nothing(
    store: StateStore, state_dir: Path
) -> None:
    plan = await pending(store, plan_of("4444dddd4444dddd4444dddd", 2))
    done = subprocess.run(
        [sys.executable, "-m", "efile_mcp", "approve"],
        input="y\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(EFILE_STATE_DIR=str(state_dir)),
        start_new_session=True,  # no controlling terminal, as an agent's shell tool or a pipeline has none
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "terminal" in lines[0], done.stderr
    assert (await store.plan_state(plan.plan_id)).pending


def test_nothing_pending_says_so(state_dir: Path) -> None:
    status, shown = on_a_terminal(state_dir, [])
    assert status == 0 and "No removal waits for your decision." in shown


def test_help_names_the_command() -> None:
    done = run_cli("--help")
    assert "approve" in done.stdout


async def test_with_sandbox_dir_it_decides_in_that_sandboxs_own_store(tmp_path: Path) -> None:
    """`efile-mcp --sandbox DIR approve` reads the store `efile-mcp --sandbox DIR` keeps its plans in."""
    from efile_mcp.sandbox.identity import identity_directory

    root = tmp_path / "sandbox-home"
    root.mkdir()
    xdg = tmp_path / "xdg"
    sandbox_state = identity_directory(root.resolve(), xdg / "efile-mcp")  # where platformdirs puts it under xdg
    store = open_store(None, sandbox_state)
    try:
        plan = await pending(store, plan_of("5555eeee5555eeee5555eeee", 3))
        status, shown = on_a_terminal(
            None, [("[y/n/N]: ", "y")], "--sandbox", str(root), env={"XDG_STATE_HOME": str(xdg)}
        )
        assert status == 0 and "Approved." in shown, shown
        assert (await store.plan_state(plan.plan_id)).status == "approved"
    finally:
        await store.aclose()
