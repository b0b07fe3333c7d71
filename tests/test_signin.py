"""Sign-in instead of a pasted token, end to end against the sandbox's AC service over real HTTP.

AK/SK and password sign-in, region choice, discovery, `~` roots, renewal ahead of expiry and on
refusal, and secrets kept out of results, logs, stderr and the audit log. Every secret and token the
sandbox handed out joins the suite's leak scan (conftest.ISSUED_TOKENS).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from efile_mcp.client import EfileApi, EfileTransport, RetryPolicy, StaticToken
from efile_mcp.client.center import RegionLocator
from efile_mcp.client.remover import EfileRemover, RemovalRun
from efile_mcp.client.signin import (
    AccessKeyCredentials,
    AcClient,
    PasswordCredentials,
    aksk_message,
    aksk_signature,
    token_expiry,
)
from efile_mcp.client.token_source import SignedInToken
from efile_mcp.client.transport import RequestPipeline
from efile_mcp.errors import AuthError, ConfigError, SignInError, UnreachableError
from efile_mcp.sandbox import (
    RunningSandbox,
    SandboxConfig,
    run_sandbox_in_thread,
    seed_sample_tree,
)
from efile_mcp.sandbox.ac import AcConfig, SandboxRegion
from efile_mcp.server import build_server
from efile_mcp.settings import Settings, load_settings

from .clocks import ManualClock, SleepingClock
from .conftest import ISSUED_TOKENS, audit_lines, call_error, call_ok, run_cli

FAST = RetryPolicy(attempts=3, budget=3.0, base_delay=0.01, max_delay=0.05)
TWO_REGIONS = (SandboxRegion("0", "ac"), SandboxRegion("11250", "east"), SandboxRegion("20091", "central"))


def _forget_secrets(sandbox: RunningSandbox) -> None:
    ac = sandbox.sandbox.config.ac
    ISSUED_TOKENS.update(sandbox.sandbox.ac.issued)
    ISSUED_TOKENS.update({ac.access_key, ac.secret_key, ac.password, ac.org_id})


def secrets_of(sandbox: RunningSandbox) -> list[str]:
    ac = sandbox.sandbox.config.ac
    return [ac.access_key, ac.secret_key, ac.password, ac.org_id, *sandbox.sandbox.ac.issued]


@pytest.fixture
def scnet(sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    """The sandbox; afterwards, everything its AC service handed out or holds joins the suite's leak scan."""
    yield sandbox
    _forget_secrets(sandbox)


@pytest.fixture
async def ac_client(scnet: RunningSandbox) -> AsyncIterator[AcClient]:
    client = AcClient(ac_url=scnet.base_url, api_url=scnet.base_url, retry=FAST)
    yield client
    await client.aclose()


def aksk(sandbox: RunningSandbox) -> AccessKeyCredentials:
    ac = sandbox.sandbox.config.ac
    return AccessKeyCredentials(user=sandbox.sandbox.config.user, access_key=ac.access_key, secret_key=ac.secret_key)


def signin_settings(sandbox: RunningSandbox, audit_path: Path, **overrides: Any) -> Settings:
    """What a fresh user sets: the AK/SK and where SCNet is (here: the sandbox); no token, no efile URL."""
    ac = sandbox.sandbox.config.ac
    values: dict[str, Any] = {
        "scnet_user": sandbox.sandbox.config.user,
        "scnet_access_key": ac.access_key,
        "scnet_secret_key": ac.secret_key,
        "scnet_ac_url": sandbox.base_url,
        "scnet_api_url": sandbox.base_url,
        "allowed_roots": ("~/scratch",),
        "audit_log": audit_path,
        "state_dir": audit_path.parent,  # never the user's own state directory
        "retry_budget": 3.0,
        "remove_mode": "delete",  # sign-in is the point here, not the quarantine (its own tests)
    }
    values.update(overrides)
    return Settings(**values)


def on_disk(sandbox: RunningSandbox, virtual: str) -> Path:
    return sandbox.root / virtual.removeprefix(sandbox.home + "/")


def envelope(code: str, msg: str = "") -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": None})


def fail(endpoint: str, response: Response, times: int = 10**6) -> Any:
    seen = {"count": 0}

    async def fault(name: str, request: Request) -> Response | None:
        if name != endpoint or seen["count"] >= times:
            return None
        seen["count"] += 1
        return response

    return fault


def _jwt(payload: object) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJl"


# ---------------------------------------------------------------------------------------------- protocol


def test_the_signed_message_is_the_documented_compact_json() -> None:
    message = aksk_message("bob", "85f96a42b13f4d2c8b760d2775bbcca8", "1764597591")
    assert message == '{"accessKey":"85f96a42b13f4d2c8b760d2775bbcca8","timestamp":"1764597591","user":"bob"}'
    expected = hmac.new(b"the-sk", message.encode(), hashlib.sha256).hexdigest()
    assert aksk_signature("bob", "85f96a42b13f4d2c8b760d2775bbcca8", "the-sk", "1764597591") == expected
    assert expected == expected.lower() and len(expected) == 64


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (_jwt({"expireTime": "1686036760954", "clusterId": "11112", "user": "u"}), 1686036760.954),
        (_jwt({"expireTime": 1686036760954}), 1686036760.954),
        (_jwt({"user": "no expiry"}), None),
        (_jwt({"expireTime": "soon"}), None),
        (_jwt(["not", "an", "object"]), None),
        ("not-a-jwt", None),
        ("a.!!!.c", None),
    ],
)
def test_expiry_is_read_from_the_payload_without_verifying_it(token: str, expected: float | None) -> None:
    assert token_expiry(token) == expected


# ---------------------------------------------------------------------------------------------- sign-in


async def test_aksk_sign_in_gives_a_region_token_the_efile_api_accepts(
    scnet: RunningSandbox, ac_client: AcClient
) -> None:
    tokens = SignedInToken(ac_client, aksk(scnet))
    transport = EfileTransport(RegionLocator(ac_client, tokens).efile_base_url, tokens, retry=FAST)
    try:
        listing = await EfileApi(transport).list_dir()
    finally:
        await transport.aclose()
    assert listing.path == scnet.home
    # The account has one usable region (the other is suspended, and "0" is the platform): no SCNET_REGION needed.
    assert tokens.region is not None and tokens.region.cluster_id == "11250" and tokens.sign_ins == 1
    expiry = token_expiry(await tokens.token())
    assert expiry is not None and abs(expiry - (time.time() + 3600)) < 60
    counts = scnet.sandbox.request_counts
    assert (counts["tokens-aksk"], counts["center"], counts["file/list"]) == (1, 1, 1)


@pytest.mark.parametrize(
    ("wrong", "server_says"),
    [
        ("secret_key", "signature does not match"),
        ("access_key", "unknown user or access key"),
        ("clock", "off the server clock"),
    ],
)
async def test_a_bad_sign_in_is_refused_with_the_settings_to_check(
    scnet: RunningSandbox, ac_client: AcClient, wrong: str, server_says: str
) -> None:
    good = aksk(scnet)
    credentials = AccessKeyCredentials(
        user=good.user,
        access_key="0" * 32 if wrong == "access_key" else good.access_key,
        secret_key="0" * 32 if wrong == "secret_key" else good.secret_key,
    )
    client = ac_client
    if wrong == "clock":  # a timestamp more than 300 s off the server's
        client = AcClient(ac_url=scnet.base_url, api_url=scnet.base_url, retry=FAST, clock=lambda: time.time() - 301)
    try:
        with pytest.raises(SignInError) as caught:
            await SignedInToken(client, credentials).token()
    finally:
        if client is not ac_client:
            await client.aclose()
    text = str(caught.value)
    assert server_says in text and "10004" in text and "SCNET_SECRET_KEY" in text
    assert not any(secret in text for secret in secrets_of(scnet))


async def test_callers_waiting_on_a_failing_sign_in_share_its_failure(
    scnet: RunningSandbox, ac_client: AcClient, audit_path: Path
) -> None:
    """Repeated failed sign-ins can lock an account: concurrent callers make one attempt between them."""
    wrong = AccessKeyCredentials(user=scnet.sandbox.config.user, access_key=aksk(scnet).access_key, secret_key="0" * 32)
    tokens = SignedInToken(ac_client, wrong)
    failures: list[str] = []

    async def call() -> None:
        with pytest.raises(SignInError) as caught:
            await tokens.token()
        failures.append(str(caught.value))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(call)
    assert len(failures) == 8 and len(set(failures)) == 1
    assert scnet.sandbox.request_counts["tokens-aksk"] == 1
    with pytest.raises(SignInError):  # a later call does try again
        await tokens.token()
    assert scnet.sandbox.request_counts["tokens-aksk"] == 2

    # The same through a dry run listing three parents at once, with the region still to discover.
    scnet.sandbox.reset_records()
    home = scnet.home
    settings = signin_settings(scnet, audit_path, scnet_secret_key="0" * 32, allowed_roots=(f"{home}/scratch",))
    # Nothing at start-up signs in (the quarantine's start-up purge included): only the dry run's calls here.
    async with Client(build_server(settings)) as client:
        await client.list_tools()  # the server is up, its start-up tasks under way
        assert scnet.sandbox.request_counts["tokens-aksk"] == 0, "a server start signed in"
        paths = [
            f"{home}/scratch/run-001/stdout.log",
            f"{home}/scratch/run-002/stdout.log",
            f"{home}/scratch/tmp.log",
        ]
        text = await call_error(client, "remove_paths", {"paths": paths})
    assert "signature does not match" in text
    assert scnet.sandbox.request_counts["tokens-aksk"] == 1


async def test_password_sign_in(scnet: RunningSandbox, ac_client: AcClient) -> None:
    ac = scnet.sandbox.config.ac
    user = scnet.sandbox.config.user
    tokens = SignedInToken(ac_client, PasswordCredentials(user=user, password=ac.password, org_id=ac.org_id))
    token = await tokens.token()
    transport = EfileTransport(scnet.base_url, tokens, retry=FAST)
    try:
        assert (await EfileApi(transport).list_dir()).path == scnet.home
    finally:
        await transport.aclose()
    assert token in scnet.sandbox.ac.issued and scnet.sandbox.request_counts["tokens"] == 1
    wrong = SignedInToken(ac_client, PasswordCredentials(user=user, password="not-it", org_id=ac.org_id))
    with pytest.raises(SignInError, match="SCNET_PASSWORD and SCNET_ORG_ID"):
        await wrong.token()


# ---------------------------------------------------------------------------------------------- regions


@pytest.mark.parametrize("sandbox", [{"ac": AcConfig(regions=TWO_REGIONS)}], indirect=True)
@pytest.mark.parametrize(
    ("wanted", "cluster"), [("central", "20091"), ("20091", "20091"), ("east", "11250"), (" EAST ", "11250")]
)
async def test_the_region_is_chosen_by_name_or_cluster_id(
    scnet: RunningSandbox, ac_client: AcClient, wanted: str, cluster: str
) -> None:
    tokens = SignedInToken(ac_client, aksk(scnet), wanted)
    token = await tokens.token()
    assert tokens.region is not None and tokens.region.cluster_id == cluster
    payload = token.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["clusterId"] == cluster


@pytest.mark.parametrize(
    ("sandbox", "wanted", "expected"),
    [
        pytest.param(
            {"ac": AcConfig(regions=TWO_REGIONS)},
            None,
            ["2 regions", "set SCNET_REGION", "east (id 11250)", "central (id 20091)", "ac (id 0, platform only)"],
            id="ambiguous",
        ),
        pytest.param(
            {"ac": AcConfig(regions=TWO_REGIONS)}, "west", ["'west' is none", "east (id 11250)"], id="unknown"
        ),
        pytest.param(
            {"ac": AcConfig(regions=TWO_REGIONS)}, "ac", ["platform region", "east (id 11250)"], id="platform"
        ),
        pytest.param({}, "sandbox-suspended", ["suspended", "no token", "Top the account up"], id="suspended"),
        pytest.param(
            {"ac": AcConfig(regions=(SandboxRegion("0", "ac"), SandboxRegion("7", "only", suspended=True)))},
            None,
            ["no region with file access", "only (id 7, suspended)"],
            id="all-suspended",
        ),
    ],
    indirect=["sandbox"],
)
async def test_a_region_that_cannot_be_used_is_a_clear_error_listing_the_regions(
    scnet: RunningSandbox, ac_client: AcClient, wanted: str | None, expected: list[str]
) -> None:
    with pytest.raises(SignInError) as caught:
        await SignedInToken(ac_client, aksk(scnet), wanted).token()
    text = str(caught.value)
    assert all(part in text for part in expected), text
    assert not any(secret in text for secret in secrets_of(scnet))


@pytest.mark.parametrize("sandbox", [{"ac": AcConfig(regions=TWO_REGIONS)}], indirect=True)
async def test_over_mcp_a_sign_in_problem_is_a_tool_error_and_the_server_keeps_serving(
    scnet: RunningSandbox, audit_path: Path
) -> None:
    async with Client(build_server(signin_settings(scnet, audit_path))) as client:
        for _ in range(2):  # not remembered: each call tries again, and says the same
            text = await call_error(client, "list_files", {})
            assert "set SCNET_REGION" in text and "central (id 20091)" in text
        text = await call_error(client, "remove_paths", {"paths": [f"{scnet.home}/scratch/tmp.log"]})
        assert "SCNET_REGION" in text
    async with Client(build_server(signin_settings(scnet, audit_path, scnet_region="central"))) as client:
        assert (await call_ok(client, "list_files", {}))["path"] == scnet.home


# ---------------------------------------------------------------------------------------------- discovery


@pytest.mark.parametrize(
    "sandbox",
    [
        pytest.param({"ac": AcConfig(efile_urls=({"url": "{base}", "enable": True},))}, id="no-suffix-boolean"),
        pytest.param({"ac": AcConfig(efile_urls=({"url": "{base}/efile", "enable": "true"},))}, id="suffix-string"),
        pytest.param(
            {
                "ac": AcConfig(
                    efile_urls=(
                        {"url": "http://127.0.0.1:9/efile", "enable": "false"},
                        {"url": "http://127.0.0.1:9", "enable": False},
                        {"url": "{base}/efile/", "enable": "true"},
                        {"url": "http://127.0.0.1:9/efile", "enable": "true"},
                    )
                )
            },
            id="first-enabled",
        ),
    ],
    indirect=True,
)
async def test_discovery_uses_the_first_enabled_efile_url(scnet: RunningSandbox, audit_path: Path) -> None:
    async with Client(build_server(signin_settings(scnet, audit_path))) as client:
        listing = await call_ok(client, "list_files", {})
        await call_ok(client, "list_files", {"path": f"{scnet.home}/scratch"})
    assert listing["path"] == scnet.home
    assert scnet.sandbox.request_counts["center"] == 1  # asked once, remembered


@pytest.mark.parametrize(
    "sandbox",
    [{"ac": AcConfig(efile_urls=({"url": "{base}/efile", "enable": False}, {"url": "{base}", "enable": "false"}))}],
    indirect=True,
)
async def test_no_enabled_efile_url_is_a_tool_error_and_efile_base_url_overrides(
    scnet: RunningSandbox, audit_path: Path
) -> None:
    async with Client(build_server(signin_settings(scnet, audit_path))) as client:
        text = await call_error(client, "list_files", {})
    assert "no enabled efile URL" in text and "EFILE_BASE_URL" in text
    settings = signin_settings(scnet, audit_path, base_url=f"{scnet.base_url}/efile")
    async with Client(build_server(settings)) as client:
        assert (await call_ok(client, "list_files", {}))["path"] == scnet.home
        # `~` roots still need the home, which only the center knows.
        plan = await call_ok(client, "remove_paths", {"paths": [f"{scnet.home}/scratch/tmp.log"]})
    assert plan["items"][0]["status"] == "would_remove"


async def test_build_server_stays_offline_and_an_unreachable_service_is_a_tool_error(audit_path: Path) -> None:
    with socket.socket() as service:
        service.bind(("127.0.0.1", 0))
        service.listen(8)
        service.setblocking(False)
        nowhere = f"http://127.0.0.1:{service.getsockname()[1]}"
        settings = Settings(
            scnet_user="u",
            scnet_access_key="ak",
            scnet_secret_key="sk-not-shown",
            scnet_ac_url=nowhere,
            scnet_api_url=nowhere,
            allowed_roots=("~/scratch",),
            audit_log=audit_path,
            state_dir=audit_path.parent,
            retry_budget=0.5,
        )
        server = build_server(settings)
        with pytest.raises(BlockingIOError):
            service.accept()  # build_server opened no connection to the service
    # Closed now: nothing listens there any more.
    async with Client(server) as client:
        for name, arguments in [("list_files", {}), ("remove_paths", {"paths": ["/public/home/u/scratch/a"]})]:
            text = await call_error(client, name, arguments)
            assert "could not sign in to SCNet" in text and "SCNET_API_URL" in text and "sk-not-shown" not in text
            assert f"cannot reach the SCNet API at {nowhere} (SCNET_API_URL): connection refused" in text
            assert "overloaded" not in text


async def test_an_unreachable_center_is_reported_with_its_url_and_setting(
    sandbox: RunningSandbox, audit_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"
    settings = Settings(
        token=sandbox.token,
        scnet_ac_url=nowhere,
        allowed_roots=("~",),
        audit_log=audit_path,
        state_dir=audit_path.parent,
        retry_budget=0.5,  # the connect budget's bound, below: the one of the default policy
    )
    async with Client(build_server(settings)) as client:
        text = await call_error(client, "list_files", {})
    assert f"cannot reach the SCNet AC service at {nowhere} (SCNET_AC_URL): connection refused" in text
    assert "Check SCNET_AC_URL and the network" in text and "EFILE_BASE_URL" in text and "overloaded" not in text


async def test_an_unreachable_center_is_given_up_within_the_connect_budget_not_the_retry_budget() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"
    clock = SleepingClock()
    pipeline = RequestPipeline(retry=RetryPolicy(), sleep=clock.sleep, clock=clock)  # the default: 30 s of budget
    client = AcClient(ac_url=nowhere, api_url=nowhere, pipeline=pipeline)
    try:
        with pytest.raises(UnreachableError):
            await client.center(StaticToken("t0ken-value"))
    finally:
        await pipeline.aclose()
    assert 0 < sum(clock.slept) <= RetryPolicy().connect_budget < RetryPolicy().budget


# ---------------------------------------------------------------------------------------------- `~` roots


async def test_home_relative_roots_are_anchored_at_the_home_the_center_reports(
    scnet: RunningSandbox, audit_path: Path
) -> None:
    home = scnet.home
    settings = signin_settings(scnet, audit_path, allowed_roots=("~/scratch", "~/数据", "/somewhere/else"))
    async with Client(build_server(settings)) as client:
        plan = await call_ok(
            client,
            "remove_paths",
            {"paths": [f"{home}/scratch/tmp.log", f"{home}/数据/结果.csv", f"{home}/notes.txt", f"{home}/scratch"]},
        )
        again = await call_ok(client, "remove_paths", {"paths": [f"{home}/scratch/run-002"]})
    status = {item["path"]: item["status"] for item in plan["items"]}
    assert status == {
        f"{home}/scratch/tmp.log": "would_remove",
        f"{home}/数据/结果.csv": "would_remove",
        f"{home}/notes.txt": "refused",  # outside every root
        f"{home}/scratch": "refused",  # a root itself
    }
    assert again["items"][0]["status"] == "would_remove"
    counts = scnet.sandbox.request_counts
    assert (counts["tokens-aksk"], counts["center"]) == (1, 1)


async def test_a_static_token_finds_the_region_and_the_home_too(sandbox: RunningSandbox, audit_path: Path) -> None:
    settings = Settings(
        token=sandbox.token,
        scnet_ac_url=sandbox.base_url,
        allowed_roots=("~",),
        audit_log=audit_path,
        state_dir=audit_path.parent,
    )
    async with Client(build_server(settings)) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/notes.txt", f"{sandbox.home}/.ssh"]})
    assert [item["status"] for item in plan["items"]] == ["would_remove", "refused"]
    counts = sandbox.sandbox.request_counts
    assert (counts["center"], counts["tokens-aksk"], counts["tokens"]) == (1, 0, 0)


@pytest.mark.parametrize("root", ["~/../etc", "~bob/scratch", "~/a//b", "~/scratch/"])
def test_home_relative_roots_are_checked_at_start(root: str, audit_path: Path) -> None:
    settings = Settings(
        token="t",
        base_url="https://efile.example",
        allowed_roots=(root,),
        audit_log=audit_path,
        state_dir=audit_path.parent,
    )
    with pytest.raises(ConfigError) as caught:
        build_server(settings)
    text = str(caught.value)
    assert text.startswith("invalid setting EFILE_ALLOWED_ROOTS") and "\n" not in text
    assert "home-reported" not in text  # the stand-in home used for the offline check is not shown


# ---------------------------------------------------------------------------------------------- renewal


@pytest.mark.parametrize(("ttl", "ahead"), [(3600.0, 300.0), (100.0, 10.0)])
async def test_the_token_is_renewed_ahead_of_expiry(scnet: RunningSandbox, ttl: float, ahead: float) -> None:
    clock = ManualClock()
    scnet.sandbox.config.ac.clock = clock
    scnet.sandbox.config.ac.token_ttl = ttl
    client = AcClient(ac_url=scnet.base_url, api_url=scnet.base_url, retry=FAST, clock=clock)
    tokens = SignedInToken(client, aksk(scnet), clock=clock)
    transport = EfileTransport(scnet.base_url, tokens, retry=FAST)
    api = EfileApi(transport)
    try:
        first = await tokens.token()
        clock.now += ttl - ahead - 1
        assert await tokens.token() == first and tokens.renewals == 0
        clock.now += 2  # now less than min(10% of the lifetime, 5 min) is left
        second = await tokens.token()
        assert second != first and (tokens.renewals, tokens.sign_ins) == (1, 1)
        assert (await api.list_dir()).path == scnet.home
        # Far past the renewal window (24 h after expiry) tokens/next refuses: sign in again instead.
        clock.now += ttl + 25 * 3600
        third = await tokens.token()
        assert third not in (first, second) and (tokens.renewals, tokens.sign_ins) == (1, 2)
        assert (await api.list_dir()).path == scnet.home
    finally:
        await transport.aclose()
        await client.aclose()
    assert scnet.sandbox.request_counts["tokens/next"] == 2


async def test_a_failed_renewal_keeps_a_token_that_still_works(scnet: RunningSandbox) -> None:
    clock = ManualClock()
    scnet.sandbox.config.ac.clock = clock
    client = AcClient(ac_url=scnet.base_url, api_url=scnet.base_url, retry=FAST, clock=clock)
    tokens = SignedInToken(client, aksk(scnet), clock=clock)
    try:
        first = await tokens.token()
        down = envelope("10001", "AC service down")

        async def ac_down(name: str, request: Request) -> Response | None:
            return down if name in ("tokens/next", "tokens-aksk") else None

        scnet.sandbox.fault = ac_down
        clock.now += 3600 - 60  # renewal due, but the AC service fails
        assert await tokens.token() == first
        assert await tokens.token() == first  # no new attempt on every request
        assert scnet.sandbox.request_counts["tokens/next"] == 1
        clock.now += 120  # expired, and still no way to renew
        with pytest.raises(SignInError, match="10001"):
            await tokens.token()
    finally:
        await client.aclose()


def _moving_clock(scnet: RunningSandbox) -> tuple[ManualClock, AcClient, SignedInToken]:
    """One wall clock for the sandbox's tokens and the client's renewal: tests move it instead of sleeping."""
    clock = ManualClock()
    scnet.sandbox.config.ac.clock = clock
    client = AcClient(ac_url=scnet.base_url, api_url=scnet.base_url, retry=FAST, clock=clock)
    return clock, client, SignedInToken(client, aksk(scnet), clock=clock)


@pytest.mark.parametrize("sandbox", [{"ac": AcConfig(token_ttl=3.0), "inline_max_entries": 0}], indirect=True)
async def test_a_long_task_wait_survives_the_token_expiring(scnet: RunningSandbox) -> None:
    big = f"{scnet.home}/scratch/big-run"
    clock, client, tokens = _moving_clock(scnet)
    transport = EfileTransport(scnet.base_url, tokens, retry=FAST)
    api = EfileApi(transport)
    try:
        run = RemovalRun(paths=(big,))
        await EfileRemover(transport).remove(run)
        task = run.outcomes[big].task
        assert task is not None and task.status == "waiting"  # queued, not run inline
        started = clock.now
        while True:  # what get_task's wait does, a second of token lifetime per look
            clock.now += 1.0
            found = (await api.tasks([task.task_id])).tasks[task.task_id]
            if found.terminal:
                break
            await anyio.sleep(0.01)
        if clock.now - started < 4:  # the task was quick: look once more, past the first token's life
            clock.now += 4
            found = (await api.tasks([task.task_id])).tasks[task.task_id]
    finally:
        await transport.aclose()
        await client.aclose()
    assert found.status == "complete" and not on_disk(scnet, big).exists()
    counts = scnet.sandbox.request_counts
    assert counts["tokens/next"] >= 1 and counts["tokens-aksk"] == 1  # renewed ahead, never refused


@pytest.mark.parametrize("sandbox", [{"ac": AcConfig(token_ttl=1.0)}], indirect=True)
async def test_a_large_removal_survives_the_token_expiring(scnet: RunningSandbox) -> None:
    many = scnet.root / "scratch" / "many"
    many.mkdir()
    for i in range(2000):
        (many / f"f-{i:04d}").write_text("x")
    paths = tuple(f"{scnet.home}/scratch/many/f-{i:04d}" for i in range(2000))
    clock, client, tokens = _moving_clock(scnet)

    async def time_passes(name: str, request: Request) -> Response | None:
        if name == "async-remove":
            # Less than the renewal window (10% of 1 s) per batch, 1.6 token lifetimes in all: the
            # token is renewed ahead between batches, never found expired by the server.
            clock.now += 0.08
        return None

    scnet.sandbox.fault = time_passes
    transport = EfileTransport(scnet.base_url, tokens, retry=FAST, concurrency=1)
    try:
        run = RemovalRun(paths=paths)
        await EfileRemover(transport, concurrency=1).remove(run)
    finally:
        await transport.aclose()
        await client.aclose()
    assert {outcome.kind for outcome in run.outcomes.values()} == {"submitted"} and not any(many.iterdir())
    counts = scnet.sandbox.request_counts
    assert counts["async-remove"] == 20 and counts["tokens/next"] >= 1 and counts["tokens-aksk"] == 1
    assert tokens.renewals == counts["tokens/next"]


# ---------------------------------------------------------------------------------------------- refusal


@pytest.mark.parametrize("code", ["10008", "911406"])
async def test_a_refused_token_is_replaced_by_signing_in_again_and_the_call_retried_once(
    scnet: RunningSandbox, ac_client: AcClient, code: str
) -> None:
    tokens = SignedInToken(ac_client, aksk(scnet))
    transport = EfileTransport(scnet.base_url, tokens, retry=FAST)
    try:
        first = await tokens.token()
        scnet.sandbox.fault = fail("file/list", envelope(code, "refused by the test"), times=1)
        assert (await EfileApi(transport).list_dir()).path == scnet.home
    finally:
        await transport.aclose()
    assert await tokens.token() != first
    counts = scnet.sandbox.request_counts
    assert (counts["file/list"], counts["tokens-aksk"], counts["tokens/next"]) == (2, 2, 0)


async def test_concurrent_refusals_share_one_sign_in(scnet: RunningSandbox, ac_client: AcClient) -> None:
    tokens = SignedInToken(ac_client, aksk(scnet))
    transport = EfileTransport(scnet.base_url, tokens, retry=FAST, concurrency=8)
    api = EfileApi(transport)
    paths: list[str | None] = [None] * 8
    try:
        await api.list_dir()
        scnet.sandbox.ac.revoke_all()  # the server forgets every token it issued (911406)
        scnet.sandbox.reset_records()

        async def fetch(i: int) -> None:
            paths[i] = (await api.list_dir()).path

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(fetch, i)
    finally:
        await transport.aclose()
    assert paths == [scnet.home] * 8
    counts = scnet.sandbox.request_counts
    assert counts["tokens-aksk"] == 1  # one sign-in for all eight refusals
    assert counts["file/list"] == 16  # each call refused once, then retried once


@pytest.mark.parametrize("code", ["10008", "911406"])
async def test_a_second_refusal_surfaces_the_error(scnet: RunningSandbox, ac_client: AcClient, code: str) -> None:
    tokens = SignedInToken(ac_client, aksk(scnet))
    transport = EfileTransport(scnet.base_url, tokens, retry=FAST)
    scnet.sandbox.fault = fail("file/list", envelope(code, "refused by the test"))
    try:
        with pytest.raises(AuthError) as caught:
            await EfileApi(transport).list_dir()
    finally:
        await transport.aclose()
    text = str(caught.value)
    assert code in text and "signed in again" in text and "SCNET_REGION" in text and "EFILE_TOKEN" not in text
    counts = scnet.sandbox.request_counts
    assert (counts["file/list"], counts["tokens-aksk"]) == (2, 2)


async def test_a_removal_after_a_server_side_revocation_signs_in_once_and_completes(
    scnet: RunningSandbox, audit_path: Path
) -> None:
    home = scnet.home
    paths = [f"{home}/scratch/run-001", f"{home}/scratch/run-002", f"{home}/scratch/tmp.log"]
    async with Client(build_server(signin_settings(scnet, audit_path, concurrency=4))) as client:
        plan = await call_ok(client, "remove_paths", {"paths": paths})
        scnet.sandbox.ac.revoke_all()
        done = await call_ok(
            client, "remove_paths", {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert done["summary"]["removed"] == 3
    assert scnet.sandbox.request_counts["tokens-aksk"] == 2


async def test_a_failed_sign_in_mid_removal_stops_new_batches(scnet: RunningSandbox, audit_path: Path) -> None:
    paths = [f"{scnet.home}/scratch/big-run/shard-{i % 3}/out-{i:04d}.dat" for i in range(300)]
    async with Client(build_server(signin_settings(scnet, audit_path, concurrency=1))) as client:
        plan = await call_ok(client, "remove_paths", {"paths": paths})
        removals = 0

        async def revoke_then_refuse_sign_in(name: str, request: Request) -> Response | None:
            nonlocal removals
            if name == "async-remove":
                removals += 1
                if removals == 2:
                    scnet.sandbox.ac.revoke_all()
            if name == "tokens-aksk" and removals >= 2:
                return envelope("10001", "AC service down")
            return None

        scnet.sandbox.fault = revoke_then_refuse_sign_in
        text = await call_error(
            client, "remove_paths", {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert "SCNet refused the sign-in" in text and "100 path(s) had already been submitted" in text
    counts = scnet.sandbox.request_counts
    assert (counts["async-remove"], counts["tokens-aksk"]) == (2, 2)  # no third batch, one sign-in attempt
    (execution,) = [line for line in audit_lines(audit_path) if line["event"] == "execution"]
    assert "sign-in" in execution["error"] and execution["summary"]["failed"] == 200


# ---------------------------------------------------------------------------------------------- secrets


async def test_secrets_never_reach_results_logs_or_the_audit_log(
    scnet: RunningSandbox, audit_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    home = scnet.home
    texts: list[str] = []
    async with Client(build_server(signin_settings(scnet, audit_path))) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [f"{home}/scratch/tmp.log"]})
        scnet.sandbox.ac.revoke_all()
        for name, arguments in [
            ("list_files", {}),
            ("remove_paths", {"paths": [f"{home}/scratch/tmp.log", f"{home}/.ssh", "/etc"]}),
            ("remove_paths", {"paths": [f"{home}/scratch/tmp.log"], "dry_run": False, "confirmation_token": "x"}),
            (
                "remove_paths",
                {"paths": plan["confirm_paths"], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
            ),
            ("get_task", {"task_ids": ["0" * 32]}),
            ("cancel_tasks", {"task_ids": ["0" * 32]}),
        ]:
            result = await client.call_tool(name, arguments)
            texts.append(
                json.dumps(result.structured_content) + " ".join(getattr(b, "text", "") for b in result.content)
            )
    scnet.sandbox.fault = fail("file/list", envelope("10008"))
    async with Client(build_server(signin_settings(scnet, audit_path))) as client:
        texts.append(await call_error(client, "list_files", {}))
    texts += [audit_path.read_text(), caplog.text]
    settings = signin_settings(scnet, audit_path, scnet_password="pw", scnet_org_id="org")
    texts += [repr(settings), str(settings.model_dump()), repr(aksk(scnet))]
    leaked = [secret for secret in secrets_of(scnet) if any(secret in text for text in texts)]
    assert leaked == [] and len(scnet.sandbox.ac.issued) >= 2
    assert "'pw'" not in repr(settings) and "'org'" not in repr(settings)


async def test_a_server_echoing_the_token_ak_and_sk_gives_a_tool_error_without_them(
    scnet: RunningSandbox, audit_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ac = scnet.sandbox.config.ac
    echoed = f"ak={ac.access_key} sk={ac.secret_key}"

    async def echo(name: str, request: Request) -> Response | None:
        if name == "file/list":
            return envelope("911030", f"token {request.headers.get('token')} of {echoed} may not read this")
        if name == "tokens-aksk" and scnet.sandbox.request_counts["tokens-aksk"] > 1:
            return envelope("10004", f"signature does not match for {echoed}")
        return None

    scnet.sandbox.fault = echo
    async with Client(build_server(signin_settings(scnet, audit_path))) as client:
        listing = await call_error(client, "list_files", {})
    ac_client = AcClient(ac_url=scnet.base_url, api_url=scnet.base_url, retry=FAST)
    try:
        with pytest.raises(SignInError) as caught:
            await SignedInToken(ac_client, aksk(scnet)).token()
    finally:
        await ac_client.aclose()
    assert "911030" in listing and "token <redacted> of ak=<redacted> sk=<redacted>" in listing
    assert "signature does not match for ak=<redacted> sk=<redacted>" in str(caught.value)
    texts = [listing, str(caught.value), caplog.text]
    assert [secret for secret in secrets_of(scnet) if any(secret in text for text in texts)] == []


@pytest.mark.parametrize(
    ("flag", "variable"),
    [
        ("--secret-key", "SCNET_SECRET_KEY"),
        ("--password", "SCNET_PASSWORD"),
        ("--access-key", "SCNET_ACCESS_KEY"),
        ("--token", "EFILE_TOKEN"),
        ("--org-id", "SCNET_ORG_ID"),
        ("--confirm-secret", "EFILE_CONFIRM_SECRET"),
    ],
)
def test_secrets_are_never_flags(flag: str, variable: str) -> None:
    proc = run_cli(flag, "s3cr3t-value")
    assert proc.returncode == 2 and f"set {variable} in the environment" in proc.stderr
    assert "s3cr3t-value" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SCNET_USER": "bob", "SCNET_ACCESS_KEY": "ak-9"}, "SCNET_SECRET_KEY is not set"),
        ({"SCNET_ACCESS_KEY": "ak-9", "SCNET_SECRET_KEY": "sk-9"}, "SCNET_USER is not set"),
        ({"SCNET_USER": "bob", "SCNET_PASSWORD": "pw-9"}, "SCNET_ORG_ID is not set"),
        ({"SCNET_USER": "bob"}, "SCNET_USER is set but nothing to sign in with"),
        (
            {"SCNET_USER": "bob", "SCNET_ACCESS_KEY": "ak-9", "SCNET_SECRET_KEY": "sk-9", "EFILE_TOKEN": "tok-9"},
            "EFILE_TOKEN and SCNet sign-in (SCNET_*) are both set",
        ),
        (
            {
                "SCNET_USER": "bob",
                "SCNET_ACCESS_KEY": "ak-9",
                "SCNET_SECRET_KEY": "sk-9",
                "SCNET_AC_URL": "api.scnet.cn",
            },
            "invalid setting SCNET_AC_URL",
        ),
        (
            {
                "SCNET_USER": "bob",
                "SCNET_ACCESS_KEY": "ak-9",
                "SCNET_SECRET_KEY": "sk-9",
                "EFILE_ALLOWED_ROOTS": "~/../x",
            },
            "invalid setting EFILE_ALLOWED_ROOTS",
        ),
        ({"SCNET_USER": "bob", "SCNET_PASSWORD": "pässwörd-9", "SCNET_ORG_ID": "o"}, "SCNET_PASSWORD holds non-ASCII"),
        ({"SCNET_USER": "张三", "SCNET_ACCESS_KEY": "ak-9", "SCNET_SECRET_KEY": "sk-9"}, "SCNET_USER holds non-ASCII"),
    ],
)
def test_incomplete_sign_in_settings_fail_at_start_with_one_line(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith(("EFILE_", "SCNET_")):
            monkeypatch.delenv(name)
    for name, value in {
        **env,
        "EFILE_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "EFILE_STATE_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        build_server(load_settings())
    text = str(caught.value)
    assert expected in text and "\n" not in text
    assert not any(secret in text for secret in ("ak-9", "sk-9", "pw-9", "tok-9"))


def test_a_sign_in_setting_error_is_one_line_on_stderr() -> None:
    proc = run_cli(env={"SCNET_USER": "bob", "SCNET_ACCESS_KEY": "ak-9"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "efile-mcp: SCNET_SECRET_KEY is not set: AK/SK sign-in needs SCNET_USER, SCNET_ACCESS_KEY and SCNET_SECRET_KEY"
    ]


# ---------------------------------------------------------------------------------------------- done when


async def test_a_fresh_user_with_only_aksk_and_a_region_name_deletes_a_confirmed_path(
    scnet: RunningSandbox, audit_path: Path, era: str
) -> None:
    ac = scnet.sandbox.config.ac
    settings = Settings(  # everything a fresh user knows; where SCNet is, here the sandbox
        scnet_user=scnet.sandbox.config.user,
        scnet_access_key=ac.access_key,
        scnet_secret_key=ac.secret_key,
        scnet_region="sandbox",
        scnet_ac_url=scnet.base_url,
        scnet_api_url=scnet.base_url,
        allowed_roots=("~/scratch",),
        audit_log=audit_path,
        state_dir=audit_path.parent,
    )
    async with Client(build_server(settings), mode=era) as client:
        home = await call_ok(client, "list_files", {})
        assert home["path"] == scnet.home
        scratch = await call_ok(client, "list_files", {"path": f"{home['path']}/scratch"})
        target = next(entry["path"] for entry in scratch["entries"] if entry["name"] == "run-001")
        plan = await call_ok(client, "remove_paths", {"paths": [target], "mode": "delete"})  # for good, as asked
        assert plan["confirm_paths"] == [target]
        done = await call_ok(
            client,
            "remove_paths",
            {"paths": [target], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
        )
    assert [item["status"] for item in done["items"]] == ["removed"]
    assert not on_disk(scnet, target).exists() and on_disk(scnet, f"{scnet.home}/scratch/run-002").exists()
    assert scnet.sandbox.received_remove_paths == [target]
    assert [line["event"] for line in audit_lines(audit_path)] == ["plan", "intent", "execution"]


async def test_over_stdio_with_only_scnet_settings_in_the_environment(tmp_path: Path) -> None:
    root = seed_sample_tree(tmp_path / "home")
    audit = tmp_path / "audit.jsonl"
    with run_sandbox_in_thread(SandboxConfig(root=root)) as running:
        try:
            ac = running.sandbox.config.ac
            env = {
                "PYTHONPATH": os.pathsep.join(sys.path),
                "SCNET_USER": running.sandbox.config.user,
                "SCNET_ACCESS_KEY": ac.access_key,
                "SCNET_SECRET_KEY": ac.secret_key,
                "SCNET_REGION": "sandbox",
                "SCNET_AC_URL": running.base_url,
                "SCNET_API_URL": running.base_url,
                "EFILE_ALLOWED_ROOTS": "~/scratch",
                "EFILE_AUDIT_LOG": str(audit),
                "EFILE_STATE_DIR": str(tmp_path / "state"),
            }
            params = StdioServerParameters(
                command=sys.executable, args=["-m", "efile_mcp", "--log-level", "DEBUG"], env=env
            )
            target = f"{running.home}/scratch/tmp.log"
            with tempfile.TemporaryFile("w+") as errlog:
                async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                    assert (await call_ok(client, "list_files", {}))["path"] == running.home
                    plan = await call_ok(
                        client, "remove_paths", {"paths": [target, f"{running.home}/notes.txt"], "mode": "delete"}
                    )
                    assert plan["confirm_paths"] == [target]
                    done = await call_ok(
                        client,
                        "remove_paths",
                        {"paths": [target], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
                    )
                errlog.seek(0)
                stderr = errlog.read()
            assert [item["status"] for item in done["items"]] == ["removed"]
            assert not on_disk(running, target).exists()
            assert "signed in to SCNet" in stderr and "Traceback" not in stderr  # DEBUG logs did reach stderr
            everything = stderr + audit.read_text()
            assert [secret for secret in secrets_of(running) if secret in everything] == []
        finally:
            _forget_secrets(running)


# ---------------------------------------------------------------------------- review regressions


def test_a_center_answering_with_a_list_gives_the_region_signed_in_to() -> None:
    from efile_mcp.models.wire import CenterInfo

    regions = [
        {"id": "0", "name": "ac", "efileUrls": []},
        {
            "id": "11250",
            "efileUrls": [{"url": "https://east/efile", "enable": "true"}],
            "clusterUserInfo": {"homePath": "/public/home/east"},
        },
        {
            "id": "20091",
            "efileUrls": [{"url": "https://central/efile", "enable": True}],
            "clusterUserInfo": {"homePath": "/public/home/central"},
        },
    ]
    central = CenterInfo.from_data(regions, "20091")
    assert (central.efile_url, central.home_path) == ("https://central/efile", "/public/home/central")
    with pytest.raises(ValueError, match="none is the one signed in to"):
        CenterInfo.from_data(regions, "99999")
    with pytest.raises(ValueError):
        CenterInfo.from_data(regions, None)  # several regions, ours unknown: no guessing
    lone = CenterInfo.from_data([regions[1]], None)
    assert lone.efile_url == "https://east/efile"
    assert CenterInfo.from_data(regions[2]).home_path == "/public/home/central"  # the observed object form


def test_settings_a_bundle_host_left_empty_or_unfilled_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("EFILE_", "SCNET_")):
            monkeypatch.delenv(name)
    for name, value in {
        "EFILE_MAX_PATHS": "",
        "EFILE_READ_ONLY": " ",
        "EFILE_ALLOWED_ROOTS": "",
        "EFILE_BASE_URL": "${user_config.efile_base_url}",
        "EFILE_TOKEN": "${user_config.efile_token}",
        "SCNET_REGION": "${user_config.scnet_region}",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.max_paths, settings.read_only, settings.allowed_roots) == (10_000, False, ())
    assert settings.base_url is None and settings.token is None and settings.scnet_region is None
