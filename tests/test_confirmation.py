"""Every way the confirmation can be abused is refused, as a tool error that says what to do, with nothing sent."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from efile_mcp.guard.tokens import ConfirmationRefused, ConfirmationSigner
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server

from .conftest import audit_lines, call_error, call_ok

# ---------------------------------------------------------------------------- the signer alone


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def signer(clock: Callable[[], float] | None = None, **kwargs: Any) -> ConfirmationSigner:
    return ConfirmationSigner(secret=b"k" * 32, ttl=300, clock=clock or FakeClock(), **kwargs)


def refusal(fn: Callable[[], object]) -> str:
    with pytest.raises(ConfirmationRefused) as caught:
        fn()
    return caught.value.code


def test_a_token_confirms_its_exact_set_once() -> None:
    s = signer()
    issued = s.issue(["/a/x", "/a/y"])
    assert s.redeem(issued.token, ["/a/y", "/a/x"]) == issued.plan_id
    assert refusal(lambda: s.redeem(issued.token, ["/a/x", "/a/y"])) == "reused"


def test_expiry_is_enforced_to_the_second() -> None:
    clock = FakeClock()
    s = signer(clock)
    issued = s.issue(["/a/x"])
    clock.now += 299
    t2 = s.issue(["/a/x"])
    assert s.redeem(issued.token, ["/a/x"])
    clock.now += 301
    assert refusal(lambda: s.redeem(t2.token, ["/a/x"])) == "expired"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-1], id="truncated-mac"),
        pytest.param(lambda t: t[: len(t) // 2], id="truncated-half"),
        pytest.param(lambda t: t + "A", id="extended"),
        pytest.param(lambda t: t.replace("efc1.", "efc2.", 1), id="wrong-prefix"),
        pytest.param(lambda t: t.split(".", 1)[1], id="no-prefix"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "efc1..", id="hollow"),
        pytest.param(lambda t: t.upper(), id="case-changed"),
        pytest.param(lambda t: t[:10] + ("B" if t[10] != "B" else "C") + t[11:], id="payload-bit-flip"),
        pytest.param(lambda t: t[:-3] + ("x" if t[-3] != "x" else "y") + t[-2:], id="mac-bit-flip"),
        pytest.param(lambda t: "efc1.é.ü", id="non-ascii"),
        pytest.param(lambda t: t + "!!!!", id="foreign-characters-appended"),
        pytest.param(lambda t: t + "\n", id="newline-appended"),
        pytest.param(lambda t: " " + t, id="space-prepended"),
        pytest.param(lambda t: t[:-6] + "$$" + t[-6:], id="garbage-inside-mac"),
        pytest.param(lambda t: t[:-1] + chr(ord(t[-1]) ^ 1), id="spare-bits-of-last-character"),
    ],
)
def test_tampered_or_truncated_tokens_are_invalid(mangle: Callable[[str], str]) -> None:
    s = signer()
    issued = s.issue(["/a/x"])
    code = refusal(lambda: s.redeem(mangle(issued.token), ["/a/x"]))
    assert code in {"invalid_token", "missing_token"}
    assert s.redeem(issued.token, ["/a/x"])  # the genuine token still works afterwards


def test_a_re_signed_payload_for_more_paths_is_invalid() -> None:
    """Editing the payload (a bigger count, another digest) without the key breaks the MAC."""
    s = signer()
    issued = s.issue(["/a/x"])
    prefix, body, mac = issued.token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["n"] = 2
    payload["e"] += 10_000
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert refusal(lambda: s.redeem(f"{prefix}.{forged}.{mac}", ["/a/x", "/a/y"])) == "invalid_token"


def test_a_token_from_another_process_key_is_invalid() -> None:
    other = ConfirmationSigner(secret=b"z" * 32, ttl=300)
    issued = other.issue(["/a/x"])
    assert refusal(lambda: signer().redeem(issued.token, ["/a/x"])) == "invalid_token"


def test_a_token_never_crosses_regions_even_with_a_shared_secret() -> None:
    region_a = signer(scope="https://a.example/efile")
    region_b = signer(scope="https://b.example/efile")
    issued = region_a.issue(["/a/x"])
    assert refusal(lambda: region_b.redeem(issued.token, ["/a/x"])) == "wrong_scope"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        (["/a/x", "/a/y", "/a/z"], "superset"),
        (["/a/x"], "subset"),
        (["/a/x", "/a/w"], "same size, other member"),
        ([], "empty"),
    ],
)
def test_any_other_path_set_is_refused_and_names_the_difference(given: list[str], why: str) -> None:
    s = signer()
    issued = s.issue(["/a/x", "/a/y"])
    with pytest.raises(ConfirmationRefused) as caught:
        s.redeem(issued.token, given)
    assert caught.value.code == "path_set_mismatch", why
    assert "confirm_paths" in str(caught.value) and "Nothing was deleted" in str(caught.value)
    if "/a/z" in given:
        assert "'/a/z'" in str(caught.value)
    assert s.redeem(issued.token, ["/a/x", "/a/y"])  # a refused attempt does not burn the token


def test_tokens_cannot_be_swapped_between_plans() -> None:
    s = signer()
    first = s.issue(["/a/x"])
    second = s.issue(["/a/y"])
    assert refusal(lambda: s.redeem(first.token, ["/a/y"])) == "path_set_mismatch"
    assert refusal(lambda: s.redeem(second.token, ["/a/x"])) == "path_set_mismatch"


def test_path_set_digest_is_not_fooled_by_joining_tricks() -> None:
    s = signer()
    issued = s.issue(["/a/x", "/a/y"])
    assert refusal(lambda: s.redeem(issued.token, ["/a/x\0/a/y"])) == "path_set_mismatch"


# ---------------------------------------------------------------------------- through the MCP surface


async def plan_for(client: Client, paths: list[str]) -> dict[str, Any]:
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    assert plan["confirmation_token"]
    return plan


async def execute(client: Client, paths: list[str], token: str | None) -> str:
    arguments: dict[str, Any] = {"paths": paths, "dry_run": False}
    if token is not None:
        arguments["confirmation_token"] = token
    return await call_error(client, "remove_paths", arguments)


def assert_nothing_sent(sandbox: RunningSandbox) -> None:
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert sandbox.sandbox.received_remove_paths == []


def tamper(token: str) -> str:
    return token[:-2] + ("AA" if not token.endswith("AA") else "BB")


async def test_execution_without_a_token_is_refused(client: Client, sandbox: RunningSandbox, audit_path: Path) -> None:
    path = f"{sandbox.home}/scratch/tmp.log"
    text = await execute(client, [path], None)
    assert "dry_run=true first" in text
    text = await execute(client, [path], "")
    assert "dry_run=true first" in text
    assert_nothing_sent(sandbox)
    assert [(line["event"], line["reason"]) for line in audit_lines(audit_path)] == [
        ("refusal", "missing_token"),
        ("refusal", "missing_token"),
    ]


async def test_tampered_token_is_refused(client: Client, sandbox: RunningSandbox) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    text = await execute(client, paths, tamper(plan["confirmation_token"]))
    assert "not valid" in text and "dry_run=true again" in text
    assert_nothing_sent(sandbox)


async def test_truncated_token_is_refused(client: Client, sandbox: RunningSandbox) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    text = await execute(client, paths, plan["confirmation_token"][:20])
    assert "not valid" in text
    assert_nothing_sent(sandbox)


async def test_reused_token_is_refused(client: Client, sandbox: RunningSandbox, audit_path: Path) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    await call_ok(
        client, "remove_paths", {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    sent = list(sandbox.sandbox.received_remove_paths)
    text = await execute(client, paths, plan["confirmation_token"])
    assert "already used" in text
    assert sandbox.sandbox.received_remove_paths == sent
    assert audit_lines(audit_path)[-1]["reason"] == "reused"


async def test_expired_token_is_refused(make_settings: Any, sandbox: RunningSandbox, era: str) -> None:
    clock = FakeClock()
    clock.now = __import__("time").time()
    server = build_server(make_settings(confirm_ttl=5), clock=clock)
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    async with Client(server, mode=era) as client:
        plan = await plan_for(client, paths)
        clock.now += 6  # the server's clock, not a sleep
        text = await execute(client, paths, plan["confirmation_token"])
    assert "expired" in text and "dry_run=true again" in text
    assert_nothing_sent(sandbox)


async def test_token_from_another_server_process_is_refused(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    async with Client(build_server(make_settings()), mode=era) as other:
        foreign = (await plan_for(other, paths))["confirmation_token"]
    async with Client(build_server(make_settings()), mode=era) as client:
        text = await execute(client, paths, foreign)
    assert "another efile-mcp process" in text
    assert_nothing_sent(sandbox)


@pytest.mark.parametrize("shape", ["superset", "subset", "other"])
async def test_a_different_path_set_is_refused(client: Client, sandbox: RunningSandbox, shape: str) -> None:
    home = sandbox.home
    confirmed = [f"{home}/scratch/tmp.log", f"{home}/scratch/run-002"]
    plan = await plan_for(client, confirmed)
    given = {
        "superset": [*confirmed, f"{home}/scratch/run-001"],
        "subset": confirmed[:1],
        "other": [confirmed[0], f"{home}/scratch/run-001"],
    }[shape]
    text = await execute(client, given, plan["confirmation_token"])
    assert "differ" in text and "confirm_paths" in text
    assert_nothing_sent(sandbox)


async def test_tokens_swapped_between_two_plans_are_refused(client: Client, sandbox: RunningSandbox) -> None:
    first = [f"{sandbox.home}/scratch/tmp.log"]
    second = [f"{sandbox.home}/scratch/run-002"]
    plan_one = await plan_for(client, first)
    plan_two = await plan_for(client, second)
    assert "differ" in await execute(client, first, plan_two["confirmation_token"])
    assert "differ" in await execute(client, second, plan_one["confirmation_token"])
    assert_nothing_sent(sandbox)


async def test_a_refused_path_cannot_ride_along_with_a_valid_token(client: Client, sandbox: RunningSandbox) -> None:
    paths = [f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    text = await execute(client, [*paths, f"{sandbox.home}/.ssh"], plan["confirmation_token"])
    assert "not allowed" in text and ".ssh" in text
    assert_nothing_sent(sandbox)


async def test_concurrent_replay_lets_exactly_one_execution_through(client: Client, sandbox: RunningSandbox) -> None:
    paths = [f"{sandbox.home}/scratch/run-001", f"{sandbox.home}/scratch/tmp.log"]
    plan = await plan_for(client, paths)
    arguments = {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    results: list[bool] = []

    async def attempt() -> None:
        result = await client.call_tool("remove_paths", arguments)
        results.append(result.is_error)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(attempt)
    assert sorted(results) == [False, True, True, True, True]
    assert sorted(sandbox.sandbox.received_remove_paths) == sorted(paths)
