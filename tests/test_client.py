"""The efile API client against the sandbox over real HTTP; faults come from the sandbox's fault hook."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from efile_mcp.client import (
    EfileApi,
    EfileTransport,
    RetryPolicy,
    StaticToken,
    normalise_base_url,
)
from efile_mcp.client.remover import EfileRemover, RemovalRun
from efile_mcp.client.signin import AccessKeyCredentials, AcClient
from efile_mcp.client.transport import RequestPipeline
from efile_mcp.client.walk import Listings
from efile_mcp.errors import (
    ApiError,
    AuthError,
    ConnectionFailedError,
    MalformedResponseError,
    RetryBudgetExhausted,
    UnreachableError,
    error_code_of,
    outcome_unknown,
)
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.sandbox.faults import FaultPlan, FaultRule

from .clocks import SleepingClock

FAST = RetryPolicy(attempts=4, budget=5.0, base_delay=0.01, max_delay=0.05)


@pytest.fixture
async def transport(sandbox: RunningSandbox) -> AsyncIterator[EfileTransport]:
    t = EfileTransport(sandbox.base_url, StaticToken(sandbox.token), retry=FAST, concurrency=4)
    yield t
    await t.aclose()


def envelope(code: object, msg: str = "", data: object = None) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": data})


def fail_first(n: int, response: Response, endpoint: str = "file/list"):  # type: ignore[no-untyped-def]
    seen = {"count": 0}

    async def fault(name: str, request: Request) -> Response | None:
        if name != endpoint:
            return None
        seen["count"] += 1
        return response if seen["count"] <= n else None

    return fault


@pytest.mark.parametrize("url", ["{u}", "{u}/", "{u}/efile", "{u}/efile/"])
async def test_base_url_with_or_without_efile_suffix(sandbox: RunningSandbox, url: str) -> None:
    t = EfileTransport(url.format(u=sandbox.base_url), StaticToken(sandbox.token), retry=FAST)
    try:
        listing = await EfileApi(t).list_dir()
    finally:
        await t.aclose()
    assert listing.path == sandbox.home
    assert normalise_base_url(url.format(u="https://x.example")) == "https://x.example"


async def test_numeric_codes_are_compared_as_strings(sandbox: RunningSandbox, transport: EfileTransport) -> None:
    sandbox.sandbox.fault = fail_first(1, envelope(0, "success", {"total": 0, "path": "/p", "fileList": []}))
    listing = await EfileApi(transport).list_dir("/p")
    assert listing.total == 0 and listing.path == "/p"
    sandbox.sandbox.fault = fail_first(1, envelope(911020, "gone"))
    with pytest.raises(ApiError) as caught:
        await EfileApi(transport).list_dir("/p")
    assert caught.value.code == "911020" and caught.value.meaning == "file or directory does not exist"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(envelope("911048", "busy"), id="rate-limited"),
        pytest.param(envelope("911404", "ac down"), id="ac-unreachable"),
        pytest.param(envelope("911504", "timeout"), id="command-timeout"),
        pytest.param(Response("bad gateway", status_code=502), id="http-502"),
        pytest.param(Response("busy", status_code=429), id="http-429"),
    ],
)
async def test_transient_failures_are_retried(
    sandbox: RunningSandbox, transport: EfileTransport, response: Response
) -> None:
    sandbox.sandbox.fault = fail_first(2, response)
    listing = await EfileApi(transport).list_dir()
    assert listing.path == sandbox.home
    assert sandbox.sandbox.request_counts["file/list"] == 3


CALLS = ["efile", "sign-in", "center"]
FAULT_NAME = {"efile": "file/list", "sign-in": "tokens-aksk", "center": "center"}


async def call_through(kind: str, sandbox: RunningSandbox, pipeline: RequestPipeline) -> object:
    """One call of `kind` through `pipeline`: the efile API, the AK/SK sign-in or the center."""
    if kind == "efile":
        t = EfileTransport(sandbox.base_url, StaticToken(sandbox.token))
        t.pipeline = pipeline
        return await EfileApi(t).list_dir()
    ac = AcClient(ac_url=sandbox.base_url, api_url=sandbox.base_url, pipeline=pipeline)
    if kind == "sign-in":
        keys = sandbox.sandbox.config.ac
        creds = AccessKeyCredentials(
            user=sandbox.sandbox.config.user, access_key=keys.access_key, secret_key=keys.secret_key
        )
        return await ac.sign_in(creds)
    return await ac.center(StaticToken(sandbox.token))


@pytest.mark.parametrize("kind", CALLS)
async def test_one_retry_policy_for_efile_sign_in_and_center_calls(sandbox: RunningSandbox, kind: str) -> None:
    """The same pipeline: transient failures retried with the same backoff, Retry-After honoured, the rest not retried."""
    name = FAULT_NAME[kind]
    clock = SleepingClock()
    caps: list[float] = []

    def jitter(cap: float) -> float:
        caps.append(cap)
        return cap / 2

    pipeline = RequestPipeline(retry=FAST, sleep=clock.sleep, clock=clock, jitter=jitter)
    try:
        busy = [
            envelope("911048", "busy"),
            Response("bad gateway", status_code=502),
            Response("x", status_code=429, headers={"Retry-After": "2"}),
        ]
        responses = iter(busy)

        async def fault(endpoint: str, request: Request) -> Response | None:
            return next(responses, None) if endpoint == name else None

        sandbox.sandbox.fault = fault
        assert await call_through(kind, sandbox, pipeline)
        assert sandbox.sandbox.request_counts[name] == 4
        assert caps == [0.01, 0.02, 0.04]  # base 0.01 doubling, capped at 0.05
        assert clock.slept == [0.005, 0.01, 2.0]  # the jittered waits, then Retry-After
        sandbox.sandbox.reset_records()
        sandbox.sandbox.fault = fail_first(99, envelope("10004", "bad parameter"), endpoint=name)
        with pytest.raises(ApiError) as caught:
            await call_through(kind, sandbox, pipeline)
        assert caught.value.code == "10004" and sandbox.sandbox.request_counts[name] == 1
    finally:
        await pipeline.aclose()


@pytest.mark.realtime  # the default sleep really waits: a lower bound, so load cannot fail it
async def test_retry_after_is_honoured_over_real_time(sandbox: RunningSandbox, transport: EfileTransport) -> None:
    sandbox.sandbox.fault = fail_first(1, Response("slow down", status_code=429, headers={"Retry-After": "0.3"}))
    started = time.monotonic()
    await EfileApi(transport).list_dir()
    assert time.monotonic() - started >= 0.28


async def test_the_on_retry_hook_sees_each_failure_about_to_be_retried(sandbox: RunningSandbox) -> None:
    clock = SleepingClock()
    t = EfileTransport(sandbox.base_url, StaticToken(sandbox.token), retry=FAST, sleep=clock.sleep, clock=clock)
    seen: list[str] = []
    sandbox.sandbox.fault = fail_first(2, Response("down", status_code=503))
    try:
        await t.call(
            "GET",
            "/efile/openapi/v2/file/list",
            params={"start": 0, "limit": 1},
            on_retry=lambda e: seen.append(error_code_of(e)),
        )
    finally:
        await t.aclose()
    assert seen == ["http_503", "http_503"]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        pytest.param(envelope("10004", "bad limit"), ApiError, id="invalid-parameter"),
        pytest.param(envelope("123456", "what"), ApiError, id="unknown-code"),
        pytest.param(Response("{not json", status_code=200), MalformedResponseError, id="malformed-json"),
        pytest.param(JSONResponse({"status": "ok"}), MalformedResponseError, id="not-an-envelope"),
        pytest.param(envelope("10008", "expired"), AuthError, id="token-expired"),
    ],
)
async def test_other_failures_are_not_retried(
    sandbox: RunningSandbox, transport: EfileTransport, response: Response, error: type[Exception]
) -> None:
    sandbox.sandbox.fault = fail_first(99, response)
    with pytest.raises(error) as caught:
        await EfileApi(transport).list_dir()
    assert sandbox.sandbox.request_counts["file/list"] == 1
    assert sandbox.token not in str(caught.value)


async def test_unknown_code_carries_meaning_and_server_message(
    sandbox: RunningSandbox, transport: EfileTransport
) -> None:
    sandbox.sandbox.fault = fail_first(1, envelope("123456", "the moon is full"))
    with pytest.raises(ApiError) as caught:
        await EfileApi(transport).list_dir()
    assert str(caught.value) == "efile API error 123456 (undocumented code) from /file/list: the moon is full"


async def test_a_server_that_keeps_failing_ends_in_a_clear_error_within_budget(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.fault = fail_first(10**6, Response("down", status_code=503))
    clock = SleepingClock()
    t = EfileTransport(sandbox.base_url, StaticToken(sandbox.token), retry=FAST, sleep=clock.sleep, clock=clock)
    try:
        with pytest.raises(RetryBudgetExhausted) as caught:
            await EfileApi(t).list_dir()
    finally:
        await t.aclose()
    assert 0 < sum(clock.slept) < FAST.budget and len(clock.slept) == FAST.attempts - 1
    assert sandbox.sandbox.request_counts["file/list"] == FAST.attempts
    assert "HTTP 503" in str(caught.value) and "gave up after 4 attempts" in str(caught.value)


async def test_the_time_budget_bounds_retries_too(sandbox: RunningSandbox) -> None:
    sandbox.sandbox.fault = fail_first(10**6, Response("slow", status_code=429, headers={"Retry-After": "0.4"}))
    clock = SleepingClock()
    t = EfileTransport(
        sandbox.base_url,
        StaticToken(sandbox.token),
        retry=RetryPolicy(attempts=20, budget=1.0),
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda cap: 0.0,  # Retry-After alone sets the wait
    )
    try:
        with pytest.raises(RetryBudgetExhausted) as caught:
            await EfileApi(t).list_dir()
    finally:
        await t.aclose()
    # 0.4 + 0.4 waited; one more 0.4 would end past the 1 s budget: stop after three requests.
    assert clock.slept == [0.4, 0.4] and sandbox.sandbox.request_counts["file/list"] == 3
    assert "HTTP 429" in str(caught.value) and "gave up after 3 attempts" in str(caught.value)


async def test_an_unreachable_base_url_is_reported_as_unreachable_quickly_not_as_overload() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    clock = SleepingClock()
    # The default policy: 6 attempts, 30 s of budget, but only 3 s of connect retries on first contact.
    t = EfileTransport(
        f"http://127.0.0.1:{port}/efile", StaticToken("secret-token-value"), sleep=clock.sleep, clock=clock
    )
    try:
        with pytest.raises(UnreachableError) as caught:
            await EfileApi(t).list_dir()
    finally:
        await t.aclose()
    text = str(caught.value)
    assert text == (
        f"cannot reach the efile API at http://127.0.0.1:{port}/efile (EFILE_BASE_URL): connection refused. "
        "Check EFILE_BASE_URL (or the region the SCNet center reports) and the network."
    )
    assert "overloaded" not in text and "secret-token-value" not in text
    assert 0 < sum(clock.slept) <= RetryPolicy().connect_budget
    assert not outcome_unknown(caught.value) and error_code_of(caught.value) == "unreachable"


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        pytest.param(
            httpx.ConnectError("[Errno -2] Name or service not known"), "the host name does not resolve", id="dns"
        ),
        pytest.param(httpx.ConnectTimeout("timed out"), "no connection within 10 s (connect timeout)", id="timeout"),
    ],
)
async def test_dns_failures_and_connect_timeouts_are_unreachable_too(fault: Exception, why: str) -> None:
    """A sandbox cannot fail a DNS lookup or a connect: httpx.MockTransport raises what httpx would."""
    if isinstance(fault, httpx.ConnectError):
        fault.__cause__ = socket.gaierror(-2, "Name or service not known")

    def handler(request: httpx.Request) -> httpx.Response:
        raise fault

    clock = SleepingClock()
    t = EfileTransport(
        "https://efile.nowhere.example",
        StaticToken("t0ken-value"),
        http_transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock,
    )
    try:
        with pytest.raises(UnreachableError) as caught:
            await EfileApi(t).list_dir()
    finally:
        await t.aclose()
    assert "https://efile.nowhere.example/efile (EFILE_BASE_URL)" in str(caught.value) and why in str(caught.value)
    assert sum(clock.slept) <= RetryPolicy().connect_budget


async def test_a_service_that_answered_before_and_then_refuses_connections_is_retried_as_before() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(200, json={"code": "0", "msg": "success", "data": {"total": 0, "fileList": []}})
        raise httpx.ConnectError("All connection attempts failed")

    clock = SleepingClock()
    t = EfileTransport(
        "https://efile.example",
        StaticToken("t0ken-value"),
        retry=FAST,
        http_transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock,
    )
    try:
        await EfileApi(t).list_dir()
        with pytest.raises(RetryBudgetExhausted) as caught:
            await EfileApi(t).list_dir()
    finally:
        await t.aclose()
    assert calls["n"] == 1 + FAST.attempts
    assert isinstance(caught.value.last, ConnectionFailedError) and not isinstance(caught.value.last, UnreachableError)
    assert "gave up after 4 attempts" in str(caught.value)
    assert not outcome_unknown(caught.value)  # the connection was never made: the request was not sent


async def test_missing_or_wrong_token_is_an_auth_error(sandbox: RunningSandbox) -> None:
    for token in (None, "wrong"):
        t = EfileTransport(sandbox.base_url, StaticToken(token), retry=FAST)
        try:
            with pytest.raises(AuthError) as caught:
                await EfileApi(t).list_dir()
        finally:
            await t.aclose()
        assert "EFILE_TOKEN" in str(caught.value)


@pytest.mark.parametrize("sandbox", [{"task_list_as_bare_list": True}, {}], indirect=True)
async def test_task_lookup_batches_ids_and_accepts_both_answer_shapes(
    sandbox: RunningSandbox, transport: EfileTransport
) -> None:
    home = sandbox.home
    run = RemovalRun(paths=(f"{home}/scratch/tmp.log", f"{home}/notes.txt"))
    await EfileRemover(transport).remove(run)
    known = [outcome.task.task_id for outcome in run.outcomes.values() if outcome.task]
    unknown = [f"{i:032x}" for i in range(1098)]
    lookup = await EfileApi(transport).tasks([*unknown[:500], *known, *unknown[500:], known[0]])
    assert set(lookup.tasks) == set(known)
    assert lookup.not_found == unknown
    assert sandbox.sandbox.request_counts["task/list"] == 3  # 1,100 distinct ids, 500 a request (the API's most)


async def test_remove_sends_at_most_100_paths_a_request(sandbox: RunningSandbox, transport: EfileTransport) -> None:
    shard = f"{sandbox.home}/scratch/big-run/shard-0"
    paths = tuple(f"{shard}/out-{i:04d}.dat" for i in range(0, 300, 3)) + tuple(
        f"{sandbox.home}/scratch/big-run/shard-1/out-{i:04d}.dat" for i in range(1, 300, 3)
    )
    run = RemovalRun(paths=paths)
    await EfileRemover(transport).remove(run)
    assert {outcome.kind for outcome in run.outcomes.values()} == {"submitted"}
    assert sandbox.sandbox.request_counts["async-remove"] == 2
    assert sorted(sandbox.sandbox.received_remove_paths) == sorted(paths)


async def test_a_vanished_path_is_isolated_and_the_rest_still_removed(
    sandbox: RunningSandbox, transport: EfileTransport
) -> None:
    shard = f"{sandbox.home}/scratch/big-run/shard-0"
    paths = tuple(f"{shard}/out-{i:04d}.dat" for i in range(0, 300, 3))
    vanished = {paths[17], paths[63]}
    for path in vanished:
        (sandbox.root / path.removeprefix(sandbox.home + "/")).unlink()
    run = RemovalRun(paths=paths)
    await EfileRemover(transport).remove(run)
    kinds = {path: outcome.kind for path, outcome in run.outcomes.items()}
    assert {p for p, k in kinds.items() if k == "missing"} == vanished
    assert {p for p, k in kinds.items() if k == "submitted"} == set(paths) - vanished
    assert not any((sandbox.root / p.removeprefix(sandbox.home + "/")).exists() for p in paths)
    # The failed batch, the 98 the listing shows resent together, the 2 suspects bisected (3): a
    # handful of requests, not one per path.
    assert sandbox.sandbox.request_counts["async-remove"] == 5
    assert sandbox.sandbox.request_counts["file/list"] == 1


async def test_bisection_isolates_a_per_path_refusal_of_the_whole_call(
    sandbox: RunningSandbox, transport: EfileTransport
) -> None:
    shard = f"{sandbox.home}/scratch/big-run/shard-0"
    paths = tuple(f"{shard}/out-{i:04d}.dat" for i in range(0, 48, 3))
    forbidden = paths[5]

    async def deny_one(name: str, request: Request) -> Response | None:
        if name == "async-remove" and forbidden in [item["sourcePath"] for item in await request.json()]:
            return envelope("911030", "permission denied")
        return None

    sandbox.sandbox.fault = deny_one
    run = RemovalRun(paths=paths)
    await EfileRemover(transport).remove(run)
    assert run.outcomes[forbidden].kind == "failed" and run.outcomes[forbidden].error_code == "911030"
    assert all(run.outcomes[p].kind == "submitted" for p in paths if p != forbidden)
    assert sandbox.sandbox.request_counts["async-remove"] <= 1 + 2 * 4  # log2(16) levels, two halves each


async def test_auth_failure_mid_removal_stops_new_batches_and_keeps_what_was_obtained(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    calls = {"n": 0}

    async def expire_after_first(name: str, request: Request) -> Response | None:
        if name == "async-remove":
            calls["n"] += 1
            if calls["n"] > 1:
                return envelope("10008", "token expired")
        return None

    sandbox.sandbox.fault = expire_after_first
    t = EfileTransport(sandbox.base_url, StaticToken(sandbox.token), retry=FAST, concurrency=1)
    shard = f"{sandbox.home}/scratch/big-run/shard-0"
    paths = tuple(f"{shard}/out-{i:04d}.dat" for i in range(0, 300, 3)) + (f"{sandbox.home}/scratch/tmp.log",) * 0
    paths = paths + tuple(f"{sandbox.home}/scratch/big-run/shard-1/out-{i:04d}.dat" for i in range(1, 300, 3))
    paths = paths + tuple(f"{sandbox.home}/scratch/big-run/shard-2/out-{i:04d}.dat" for i in range(2, 300, 3))
    run = RemovalRun(paths=paths)
    try:
        with pytest.raises(AuthError):
            await EfileRemover(t, concurrency=1).remove(run)
    finally:
        await t.aclose()
    kinds = [run.outcomes[p].kind for p in paths]
    assert kinds[:100] == ["submitted"] * 100
    assert set(kinds[100:]) == {"not_sent"}
    assert calls["n"] == 2  # the third batch was never started


async def test_an_answer_trickled_a_byte_at_a_time_cannot_outlast_the_deadline(sandbox: RunningSandbox) -> None:
    """httpx's timeout bounds each read; a gateway that trickles bytes must still not hold the call."""
    # A byte every 0.2 s for 1.2 s: no read waits 0.4 s, the whole answer takes three times the deadline.
    sandbox.sandbox.faults = FaultPlan([FaultRule("trickle", endpoint="file/list", seconds=1.2)])
    clock = SleepingClock()  # the retry's backoff, not the deadline (that is anyio's own clock)
    t = EfileTransport(
        sandbox.base_url,
        StaticToken(sandbox.token),
        timeout=0.4,
        retry=RetryPolicy(attempts=2, budget=30.0),
        sleep=clock.sleep,
        clock=clock,
    )
    try:
        with pytest.raises(RetryBudgetExhausted) as caught:
            await EfileApi(t).list_dir()
    finally:
        await t.aclose()
        sandbox.sandbox.faults = None
    # No single read waits 0.4 s, so the timeout is the deadline's; had the answer been waited out, its body
    # (blanks) would be a malformed answer, not a timeout.
    assert "ReadTimeout" in str(caught.value.last)
    assert sandbox.sandbox.request_counts["file/list"] == 2


@pytest.mark.parametrize("sandbox", [{"list_page_cap": 7}], indirect=True)
async def test_a_server_that_caps_pages_is_still_read_to_the_end(
    sandbox: RunningSandbox, transport: EfileTransport
) -> None:
    listing = await Listings(EfileApi(transport)).read_dir(f"{sandbox.home}/scratch/big-run/shard-1")
    assert len(listing.entries) == 100 and listing.complete


async def test_an_answer_of_the_wrong_shape_is_a_malformed_answer_not_a_crash(
    sandbox: RunningSandbox, transport: EfileTransport
) -> None:
    sandbox.sandbox.fault = fail_first(1, envelope("0", "success", {"total": None, "fileList": "nope"}))
    with pytest.raises(MalformedResponseError) as caught:
        await EfileApi(transport).list_dir()
    assert "/file/list" in str(caught.value)
    sandbox.sandbox.fault = fail_first(1, envelope("0", "success", [{"taskId": None}]), endpoint="task/list")
    with pytest.raises(MalformedResponseError):
        await EfileApi(transport).tasks(["a" * 32])


# ---------------------------------------------------------------------------------------------- secrets


async def test_a_token_the_server_echoes_never_reaches_an_error_a_result_or_a_log(
    sandbox: RunningSandbox, transport: EfileTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = sandbox.token

    async def echo(name: str, request: Request) -> Response | None:
        sent = request.headers.get("token", "")
        if name == "file/list":
            return envelope("10004", f"invalid parameter for token {sent} (token={sent})")
        if name == "task/list":
            task = {"taskId": "a" * 32, "status": "fail", "errorCode": "10001", "errorMsg": f"cannot act as {sent}"}
            return envelope("0", "success", [task])
        return None

    sandbox.sandbox.fault = echo
    with pytest.raises(ApiError) as caught:
        await EfileApi(transport).list_dir()
    assert str(caught.value) == (
        "efile API error 10004 (invalid parameter) from /file/list: "
        "invalid parameter for token <redacted> (token=<redacted>)"
    )
    assert token not in caught.value.server_msg
    lookup = await EfileApi(transport).tasks(["a" * 32])
    assert lookup.tasks["a" * 32].error_msg == "cannot act as <redacted>"
    sandbox.sandbox.fault = fail_first(2, Response("busy", status_code=503))
    await EfileApi(transport).list_dir()  # retried: the retries' log lines hold no token either
    assert token not in caplog.text and "<redacted>" in str(caught.value)


def test_scrubbing_catches_every_form_of_a_secret_and_leaves_the_rest_alone() -> None:
    from efile_mcp.client.transport import Secrets

    secrets = Secrets(["tok/en-1234", "AKAKAKAK", None, "", "pw"])  # too short to search for: "pw"
    body = b'{"msg": "tok\\/en-1234 and AKAKAKAK"}'
    assert secrets.found_in(body) and not secrets.found_in(b'{"msg": "nothing here, pw"}')
    data = {"msg": "tok/en-1234", "list": [{"AKAKAKAK": "x AKAKAKAK y"}], "n": 3}
    assert secrets.scrub_data(data) == {"msg": "<redacted>", "list": [{"<redacted>": "x <redacted> y"}], "n": 3}
    assert secrets.scrub("a pw b") == "a pw b"
