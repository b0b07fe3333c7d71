"""The state store: single use across restarts (SQLite) and across processes (SQLite, Redis), plans, expiry, errors.

Redis is a real redis-server on a free loopback port, started and stopped here (see redis_server.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from efile_mcp.errors import ConfigError, EfileMcpError, StateStoreError
from efile_mcp.guard.ports import Channel, Decision
from efile_mcp.guard.store import STATE_GRACE, PlanState, RedisStore, SqliteStore, StateStore, open_store

from .clocks import ManualClock as Clock
from .invariants import FIGURES
from .redis_server import RedisServer, free_port, start_redis

pytestmark = pytest.mark.anyio

T0 = 1_000_000.0  # the injected clock starts here: far from real time, as a skewed replica's could be


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> AsyncIterator[StateStore]:
    if request.param == "sqlite":
        opened = open_store(None, tmp_path / "state", clock=clock)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        opened = open_store(server.url, None, clock=clock)
        # Each test its own key space on the shared server.
        assert isinstance(opened, RedisStore)
        opened.prefix = f"efile-mcp:test:{request.node.name}:{time.time_ns()}:"
    yield opened
    await opened.aclose()


EXP = T0 + 300


# ------------------------------------------------------------------------------------- the semantics


def approve(channel: Channel = "review_page", at: float = T0) -> Decision:
    return Decision("approved", channel, at=at)


def decline(channel: Channel = "review_page") -> Decision:
    return Decision("declined", channel, at=T0)


async def test_a_plan_redeemed_by_its_token_alone_runs_once_then_is_done_with_its_outcome(store: StateStore) -> None:
    won = await store.redeem("p1", EXP, token_alone=True)
    assert won.outcome == "redeemed" and won.state.status == "running" and won.state.run_id
    assert (await store.redeem("p1", EXP, token_alone=True)).outcome == "running"  # its lease holds
    done = await store.finish("p1", EXP, won.state.run_id or "", {"removed": 3, "missing": 1})
    assert done.status == "done" and done.outcome == {"removed": 3, "missing": 1}
    again = await store.redeem("p1", EXP, token_alone=True)
    assert again.outcome == "done" and again.state.outcome == {"removed": 3, "missing": 1}
    assert (await store.redeem("p2", EXP, token_alone=True)).outcome == "redeemed"  # ids are independent


async def test_without_a_decision_a_plan_waits_and_stays_open(store: StateStore) -> None:
    assert (await store.redeem("p1", EXP)).outcome == "waiting"
    assert (await store.plan_state("p1")).status == "open"
    await store.save_plan("p1", b"plan", EXP)
    assert await store.pending(T0) == ["p1"]


async def test_first_decision_wins_and_an_approved_plan_redeems(store: StateStore) -> None:
    assert (await store.mark_asked("p1", EXP, "session-a")).status == "asked"
    assert (await store.redeem("p1", EXP, session="session-a")).outcome == "waiting"
    decided = await store.decide("p1", EXP, approve("terminal"))
    assert decided.status == "approved" and decided.decision == approve("terminal")
    late = await store.decide("p1", EXP, decline("review_page"))  # a later answer changes nothing
    assert late.status == "approved" and late.decision == approve("terminal")
    # The terminal's approval is the plan's, whichever session executes it.
    assert (await store.redeem("p1", EXP, session="session-b")).outcome == "redeemed"


async def test_a_decline_is_final(store: StateStore) -> None:
    await store.decide("p1", EXP, decline())
    assert (await store.decide("p1", EXP, approve())).status == "declined"
    assert (await store.redeem("p1", EXP, token_alone=True)).outcome == "declined"
    assert (await store.mark_asked("p1", EXP, "s")).status == "declined"


async def test_a_plan_asked_in_one_session_is_neither_answered_nor_run_from_another(store: StateStore) -> None:
    assert (await store.mark_asked("p1", EXP, "session-a")).asked_by == "session-a"
    again = await store.mark_asked("p1", EXP, "session-b")
    assert again.asked_by == "session-a" and again.waits_in_other_session("session-b")
    assert (await store.redeem("p1", EXP, session="session-b", token_alone=True)).outcome == "other_session"
    answered_by_b = await store.decide("p1", EXP, approve("client_form"), "session-b")
    assert answered_by_b.status == "asked" and answered_by_b.decision is None
    assert (await store.decide("p1", EXP, approve("client_form"), "session-a")).status == "approved"
    # A form's yes is bound to the session that asked: B still cannot run it.
    assert (await store.redeem("p1", EXP, session="session-b")).outcome == "other_session"
    assert (await store.redeem("p1", EXP, session="session-a")).outcome == "redeemed"


async def test_a_running_plan_whose_lease_ran_out_is_resumed_by_exactly_one(store: StateStore, clock: Clock) -> None:
    first = await store.redeem("p1", EXP, token_alone=True, lease=30)
    clock.now += 20
    assert await store.renew("p1", EXP, first.state.run_id or "", lease=30)
    clock.now += 29  # renewed: still held
    assert (await store.redeem("p1", EXP, token_alone=True)).outcome == "running"
    clock.now += 2  # the process died: nobody renewed
    resumed = await store.redeem("p1", EXP, token_alone=True)
    assert resumed.outcome == "resumed" and resumed.state.runs == 2 and resumed.state.run_id != first.state.run_id
    assert (await store.redeem("p1", EXP, token_alone=True)).outcome == "running"
    assert not await store.renew("p1", EXP, first.state.run_id or "")  # the dead run lost it
    assert (await store.finish("p1", EXP, resumed.state.run_id or "", {"removed": 1})).status == "done"


async def test_a_run_that_sent_nothing_gives_the_plan_back(store: StateStore) -> None:
    await store.decide("p1", EXP, approve())
    won = await store.redeem("p1", EXP)
    back = await store.release("p1", EXP, won.state.run_id or "")
    assert back.status == "approved" and back.decision == approve()
    assert (await store.redeem("p1", EXP)).outcome == "redeemed"


async def test_a_spent_plan_never_redeems_nor_is_decided(store: StateStore) -> None:
    await store.spend("open", EXP)
    assert (await store.redeem("open", EXP, token_alone=True)).outcome == "spent"
    assert (await store.decide("open", EXP, approve())).status == "spent"
    assert (await store.mark_asked("asked", EXP, "s")).status == "asked"
    await store.spend("asked", EXP)
    assert (await store.redeem("asked", EXP, session="s")).outcome == "spent"
    assert (await store.mark_asked("asked", EXP, "s")).status == "spent"


async def test_pending_lists_undecided_unexpired_removal_plans_only(store: StateStore, clock: Clock) -> None:
    for plan_id in ("open1", "asked1", "approved1", "declined1", "spent1", "short1"):
        await store.save_plan(plan_id, b"plan", EXP if plan_id != "short1" else T0 + 10)
    await store.save_plan("find-abc", b"cursor", EXP)
    await store.save_plan("run-open1", b"[]", EXP)
    await store.mark_asked("asked1", EXP, "s")
    await store.decide("approved1", EXP, approve())
    await store.decide("declined1", EXP, decline())
    await store.spend("spent1", EXP)
    assert sorted(await store.pending(T0)) == ["asked1", "open1", "short1"]
    clock.now = T0 + 11
    assert sorted(await store.pending(clock.now)) == ["asked1", "open1"]


async def test_a_state_written_before_the_state_machine_reads_as_spent_or_asked() -> None:
    assert PlanState.from_json(b"spent").status == "spent"
    assert PlanState.from_json("asked").status == "asked"
    state = PlanState("done", approve("terminal"), "a", "b", "r", 1.0, 2, {"removed": 1}, url_to_client=True)
    assert PlanState.from_json(state.to_json()) == state


async def test_a_page_handed_to_a_client_is_remembered(store: StateStore) -> None:
    assert not (await store.mark_asked("p1", EXP, "s")).url_to_client
    assert (await store.mark_asked("p1", EXP, "s", url_to_client=True)).url_to_client
    assert (await store.decide("p1", EXP, approve())).url_to_client  # kept through the decision


async def test_plans_round_trip_and_expire_on_the_injected_clock(store: StateStore, clock: Clock) -> None:
    assert await store.load_plan("nope") is None
    await store.save_plan("p1", b"\x00plan\xff", EXP)
    assert await store.load_plan("p1") == b"\x00plan\xff"
    await store.save_plan("p1", b"replaced", EXP)
    assert await store.load_plan("p1") == b"replaced"
    clock.now = EXP - 0.001
    assert await store.load_plan("p1") == b"replaced"
    clock.now = EXP
    assert await store.load_plan("p1") is None


async def test_a_spent_mark_outlives_the_token_by_the_grace_then_goes(store: StateStore, clock: Clock) -> None:
    await store.spend("p1", EXP)
    clock.now = EXP + STATE_GRACE - 1  # a replica whose clock is behind may still think the token alive
    assert (await store.redeem("p1", EXP, token_alone=True)).outcome == "spent"
    if isinstance(store, SqliteStore):
        clock.now = EXP + STATE_GRACE + 1
        await store.save_plan("other", b"x", clock.now + 300)  # a write purges what has expired
        with sqlite3.connect(store.path) as db:
            assert db.execute("SELECT count(*) FROM plan_states").fetchone() == (0,)
            assert db.execute("SELECT plan_id FROM plans").fetchall() == [("other",)]


async def test_redis_keys_expire_relative_to_the_callers_clock(redis_server: RedisServer, clock: Clock) -> None:
    # The injected clock is days away from the Redis server's: TTLs are from expires_at - clock(), not EXAT.
    import redis.asyncio

    store = open_store(redis_server.url, None, clock=clock)
    assert isinstance(store, RedisStore)
    store.prefix = f"efile-mcp:test:ttl:{time.time_ns()}:"
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await store.save_plan("p1", b"data", T0 + 60)
        await store.redeem("p1", T0 + 60, token_alone=True)
        plan_ttl = await raw.pttl(f"{store.prefix}plan:p1")
        state_ttl = await raw.pttl(f"{store.prefix}state:p1")
        assert 55_000 < plan_ttl <= 60_000
        assert (60 + STATE_GRACE) * 1000 - 5_000 < state_ttl <= (60 + STATE_GRACE) * 1000
        await store.spend("p1", T0 + 10)  # a shorter expiry never shortens a record
        assert await raw.pttl(f"{store.prefix}state:p1") > (60 + STATE_GRACE) * 1000 - 5_000
    finally:
        await raw.aclose()
        await store.aclose()


async def test_a_five_megabyte_plan_round_trips_quickly(store: StateStore) -> None:
    # 10,000 paths with what was seen of each: about 5 MB.
    plan = json.dumps(
        [
            {"path": f"/public/home/u/run-{i:05d}/" + "d" * 300, "size": i * 4096, "seen": "x" * 180}
            for i in range(10_000)
        ]
    ).encode()
    plan += b" " * max(0, 5 * 1024 * 1024 - len(plan))
    assert len(plan) >= 5 * 1024 * 1024
    best = float("inf")
    for round_ in range(3):
        started = time.perf_counter()
        await store.save_plan(f"big{round_}", plan, EXP)
        loaded = await store.load_plan(f"big{round_}")
        best = min(best, time.perf_counter() - started)
        assert loaded == plan
    FIGURES[f"5 MB plan round trip ms ({'redis' if store.shared else 'sqlite'})"] = round(best * 1000)
    assert best < 2.0, f"a 5 MB plan took {best:.2f} s to save and load"


# --------------------------------------------------------------------------------- restarts and races


async def test_single_use_holds_across_a_restart(tmp_path: Path) -> None:
    first = open_store(None, tmp_path)
    await first.save_plan("p1", b"plan", time.time() + 300)
    assert (await first.redeem("p1", time.time() + 300, token_alone=True)).outcome == "redeemed"
    assert (await first.mark_asked("p2", time.time() + 300, "s")).status == "asked"
    await first.aclose()

    second = open_store(f"sqlite:///{tmp_path / 'state.sqlite3'}", None)  # the same file, named by URL
    try:
        assert (await second.redeem("p1", time.time() + 300, token_alone=True)).outcome == "running"
        assert (await second.redeem("p2", time.time() + 300, session="t", token_alone=True)).outcome == "other_session"
        assert await second.load_plan("p1") == b"plan"
    finally:
        await second.aclose()


RACER = textwrap.dedent(
    """
    import asyncio, json, pathlib, sys, time
    from efile_mcp.guard.store import open_store

    async def main(url, state_dir, prefix, ids):
        store = open_store(url or None, pathlib.Path(state_dir) if state_dir else None)
        if prefix:
            store.prefix = prefix
        expires = time.time() + 300
        await store.redeem("warm-up-" + str(time.time_ns()), expires, token_alone=True)  # connected
        print("ready", flush=True)
        start, slot = map(float, sys.stdin.readline().split())
        outcomes = []
        for n, plan_id in enumerate(ids):
            while time.time() < start + n * slot:  # every racer fires at the same instant, id after id
                pass
            outcomes.append((await store.redeem(plan_id, expires, token_alone=True)).outcome)
        await store.aclose()
        print(json.dumps(dict(zip(ids, outcomes))), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
    """
)


def race(url: str, state_dir: str, prefix: str, ids: list[str], processes: int = 2) -> list[dict[str, str]]:
    """`processes` Python processes, each with its own store, redeem each id at the same instant; their outcomes."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url, state_dir, prefix, json.dumps(ids)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        start, slot = time.time() + 0.3, 0.004  # 200 ids: under a second
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"{start} {slot}\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def assert_one_winner_each(results: list[dict[str, str]], ids: list[str], name: str) -> None:
    for plan_id in ids:
        outcomes = sorted(result[plan_id] for result in results)
        assert outcomes == ["redeemed"] + ["running"] * (len(results) - 1), (plan_id, outcomes)
    wins = [sum(outcome == "redeemed" for outcome in result.values()) for result in results]
    FIGURES[f"race wins per process ({name}) " + "/".join(map(str, wins))] += 1


def test_two_processes_sharing_redis_redeem_each_plan_once(redis_server: RedisServer) -> None:
    ids = [f"race-{i}" for i in range(200)]
    prefix = f"efile-mcp:test:race:{time.time_ns()}:"
    results = race(redis_server.url, "", prefix, ids)
    assert_one_winner_each(results, ids, "redis")


def test_two_processes_sharing_one_sqlite_file_redeem_each_plan_once(tmp_path: Path) -> None:
    ids = [f"race-{i}" for i in range(200)]
    # Both open the file at the same moment it is first created: WAL set-up and schema race too.
    results = race("", str(tmp_path / "fresh"), "", ids)
    assert_one_winner_each(results, ids, "sqlite")


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "redis://127.0.0.1:99999/0",
        "redis://127.0.0.1:port/0",
        "redis://:s3cret@127.0.0.1:70000/0",
        "redis:///0",
        "redis://127.0.0.1:6379/zero",
        "sqlite://relative/path.sqlite3",
        "sqlite:///",
        "postgres://u:s3cret@db/x",
    ],
)
def test_a_bad_url_is_a_config_error_naming_the_setting(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(url, tmp_path)
    message = str(caught.value)
    assert "EFILE_STATE_URL" in message
    assert "\n" not in message
    assert "s3cret" not in message


def test_an_unopenable_state_dir_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as caught:
        open_store(None, blocker)
    message = str(caught.value)
    assert "EFILE_STATE_DIR" in message and str(blocker) in message and "\n" not in message


def test_an_unopenable_state_file_url_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite3").mkdir()  # (a damaged file is set aside instead: test_state_recovery.py)
    with pytest.raises(ConfigError) as caught:
        open_store(f"sqlite:///{tmp_path / 'state.sqlite3'}", None)
    assert "EFILE_STATE_URL" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
async def test_the_state_dir_and_file_are_private(tmp_path: Path) -> None:
    store = open_store(None, tmp_path / "new" / "state")
    try:
        await store.redeem("p1", time.time() + 300, token_alone=True)
    finally:
        await store.aclose()
    assert stat.S_IMODE((tmp_path / "new" / "state").stat().st_mode) == 0o700
    for name in ("state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm"):
        path = tmp_path / "new" / "state" / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_descriptions_say_where_without_the_password(tmp_path: Path) -> None:
    sqlite_store = open_store(None, tmp_path)
    assert str(tmp_path / "state.sqlite3") in sqlite_store.description and not sqlite_store.shared
    redis_store = open_store("redis://:s3cret@10.1.2.3:6380/2", None)
    assert redis_store.shared
    assert "10.1.2.3:6380/2" in redis_store.description and "s3cret" not in redis_store.description
    tls = open_store("rediss://admin:s3cret@cache.example:6390/0", None)
    assert "rediss://admin@cache.example:6390/0" in tls.description and "s3cret" not in tls.description


async def test_redis_down_at_run_time_is_a_state_store_error(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    store = open_store(server.url, None)
    try:
        assert (await store.redeem("p1", time.time() + 300, token_alone=True)).outcome == "redeemed"
        server.stop()
        for call in (
            store.redeem("p1", time.time() + 300, token_alone=True),
            store.load_plan("p1"),
            store.save_plan("p2", b"x", time.time() + 300),
            store.mark_asked("p2", time.time() + 300),
            store.spend("p2", time.time() + 300),
        ):
            with pytest.raises(StateStoreError) as caught:
                await call
            assert isinstance(caught.value, EfileMcpError)
            assert f"127.0.0.1:{server.port}" in str(caught.value) and "unreachable" in str(caught.value)
    finally:
        server.stop()
        await store.aclose()


async def test_redis_never_started_is_a_state_store_error() -> None:
    store = open_store(f"redis://127.0.0.1:{free_port()}/0", None)
    try:
        with pytest.raises(StateStoreError, match="is unreachable"):
            await store.mark_asked("p1", time.time() + 300)
    finally:
        await store.aclose()


async def test_a_closed_sqlite_store_refuses_with_a_state_store_error(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    await store.aclose()
    with pytest.raises(StateStoreError, match="closed"):
        await store.redeem("p1", time.time() + 300, token_alone=True)
