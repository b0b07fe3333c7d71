"""The quota client: the HPC URL and user from the center (or SCNET_HPC_URL, SCNET_USER), and every
quota problem reported in `QuotaReport.error`, never raised. Against the sandbox over real HTTP;
httpx.MockTransport only for answer shapes the sandbox does not produce."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from efile_mcp.client import EfileTransport, RetryPolicy, StaticToken
from efile_mcp.client.center import QuotaReader, QuotaReport, RegionLocator
from efile_mcp.client.signin import AccessKeyCredentials, AcClient
from efile_mcp.client.token_source import SignedInToken
from efile_mcp.client.transport import RequestPipeline
from efile_mcp.errors import AuthError, SignInError
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.sandbox.ac import AcConfig
from efile_mcp.settings import Settings

from .clocks import SleepingClock
from .conftest import ISSUED_TOKENS

FAST = RetryPolicy(attempts=3, budget=3.0, base_delay=0.01, max_delay=0.05)


@pytest.fixture
async def pipeline() -> AsyncIterator[RequestPipeline]:
    clock = SleepingClock()
    p = RequestPipeline(retry=FAST, sleep=clock.sleep, clock=clock)
    yield p
    await p.aclose()


def aksk(sandbox: RunningSandbox) -> AccessKeyCredentials:
    ac = sandbox.sandbox.config.ac
    return AccessKeyCredentials(user=sandbox.sandbox.config.user, access_key=ac.access_key, secret_key=ac.secret_key)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again at once: nothing listens there


def envelope(code: str, msg: str = "", data: object = None) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": data})


def only(endpoint: str, response: Response) -> Any:
    async def fault(name: str, request: Request) -> Response | None:
        return response if name == endpoint else None

    return fault


async def test_signed_in_the_center_gives_the_hpc_url_and_the_user(
    sandbox: RunningSandbox, pipeline: RequestPipeline
) -> None:
    ac = AcClient(ac_url=sandbox.base_url, api_url=sandbox.base_url, pipeline=pipeline)
    tokens = SignedInToken(ac, aksk(sandbox))
    report = await QuotaReader(pipeline, tokens, locator=RegionLocator(ac, tokens)).read()
    ISSUED_TOKENS.update(sandbox.sandbox.ac.issued)
    assert report.error is None
    (entry,) = report.entries
    assert (entry.path, entry.threshold, entry.username) == (sandbox.home, 300.0, "demo")
    assert entry.usage is not None and entry.usage >= 0
    counts = sandbox.sandbox.request_counts
    assert (counts["tokens-aksk"], counts["center"], counts["quota"]) == (1, 1, 1)


@pytest.mark.parametrize("suffix", ["", "/", "/hpc", "/hpc/"])
async def test_scnet_hpc_url_with_or_without_hpc_and_scnet_user_need_no_center(
    sandbox: RunningSandbox, pipeline: RequestPipeline, suffix: str
) -> None:
    reader = QuotaReader(pipeline, StaticToken(sandbox.token), hpc_url=sandbox.base_url + suffix, user_name="demo")
    report = await reader.read()
    assert report.error is None and [e.path for e in report.entries] == [sandbox.home]
    assert sandbox.sandbox.request_counts["center"] == 0


@pytest.mark.parametrize("sandbox", [{"quota_refused": True}], indirect=True)
async def test_an_account_refused_the_quota_call_gets_quota_unknown_with_the_reason(
    sandbox: RunningSandbox, pipeline: RequestPipeline
) -> None:
    ac = AcClient(ac_url=sandbox.base_url, api_url=sandbox.base_url, pipeline=pipeline)
    tokens = StaticToken(sandbox.token)
    report = await QuotaReader(pipeline, tokens, locator=RegionLocator(ac, tokens)).read()
    assert report.entries == []
    assert report.error is not None and "10009" in report.error and "no permission for this call" in report.error
    assert sandbox.sandbox.request_counts["quota"] == 1  # not retried: a refusal, not a failure


@pytest.mark.parametrize(
    ("sandbox", "threshold"),
    [({"quota_threshold_gb": 0.0}, None), ({"quota_threshold_gb": 1e-9}, 1e-9)],
    indirect=["sandbox"],
)
async def test_a_threshold_of_zero_is_unknown_and_usage_above_the_threshold_is_kept(
    sandbox: RunningSandbox, pipeline: RequestPipeline, threshold: float | None
) -> None:
    os.truncate(sandbox.root / "notes.txt", 3 * 1024**3)  # 3 GB apparent size, no disk space
    report = await QuotaReader(pipeline, StaticToken(sandbox.token), hpc_url=sandbox.base_url, user_name="demo").read()
    (entry,) = report.entries
    assert report.error is None and entry.threshold == threshold
    assert entry.usage is not None and entry.usage >= 3.0  # far over a tiny threshold: reported as is


async def test_an_unreachable_hpc_url_is_quota_unknown_naming_the_url_and_setting(pipeline: RequestPipeline) -> None:
    nowhere = closed_port_url()
    report = await QuotaReader(pipeline, StaticToken("t0ken-value"), hpc_url=f"{nowhere}/hpc", user_name="u").read()
    assert report.entries == []
    assert report.error == (
        f"quota is unknown: cannot reach the SCNet HPC API at {nowhere}/hpc (SCNET_HPC_URL): connection refused. "
        "Check SCNET_HPC_URL (or the region the SCNet center reports) and the network."
    )


async def test_with_a_static_token_and_no_center_the_settings_to_give_are_named(
    sandbox: RunningSandbox, pipeline: RequestPipeline
) -> None:
    report = await QuotaReader(pipeline, StaticToken(sandbox.token)).read()
    assert report.entries == [] and report.error is not None
    assert "SCNET_HPC_URL" in report.error and "SCNET_USER (the cluster user name)" in report.error
    # A center that cannot be reached: the same two settings, and why.
    ac = AcClient(ac_url=closed_port_url(), api_url=sandbox.base_url, pipeline=pipeline)
    tokens = StaticToken(sandbox.token)
    report = await QuotaReader(pipeline, tokens, locator=RegionLocator(ac, tokens), hpc_url=sandbox.base_url).read()
    assert report.error is not None and report.entries == []
    assert "the SCNet center could not be asked" in report.error and "connection refused" in report.error
    assert "Set SCNET_USER (the cluster user name) to read it." in report.error
    # ... and with both given, no center is needed at all.
    report = await QuotaReader(
        pipeline, tokens, locator=RegionLocator(ac, tokens), hpc_url=sandbox.base_url, user_name="demo"
    ).read()
    assert report.error is None and len(report.entries) == 1


@pytest.mark.parametrize(
    "sandbox", [{"ac": AcConfig(hpc_urls=({"url": "{base}/hpc", "enable": False},))}], indirect=True
)
async def test_a_center_with_no_enabled_hpc_url_says_to_set_scnet_hpc_url(
    sandbox: RunningSandbox, pipeline: RequestPipeline
) -> None:
    ac = AcClient(ac_url=sandbox.base_url, api_url=sandbox.base_url, pipeline=pipeline)
    tokens = StaticToken(sandbox.token)
    report = await QuotaReader(pipeline, tokens, locator=RegionLocator(ac, tokens)).read()
    assert report.error == (
        "quota is unknown: the SCNet center lists no enabled HPC URL for this region. "
        "Set SCNET_HPC_URL (the region's HPC URL) to read it."
    )


async def test_a_user_the_hpc_api_does_not_know_names_scnet_user(
    sandbox: RunningSandbox, pipeline: RequestPipeline
) -> None:
    report = await QuotaReader(
        pipeline, StaticToken(sandbox.token), hpc_url=sandbox.base_url, user_name="nobody"
    ).read()
    assert report.entries == [] and report.error is not None
    assert (
        "does not know the user 'nobody'" in report.error and "911009" in report.error and "SCNET_USER" in report.error
    )


async def test_a_refused_token_is_quota_unknown_but_no_token_at_all_raises(
    sandbox: RunningSandbox, pipeline: RequestPipeline
) -> None:
    sandbox.sandbox.fault = only("quota", envelope("10008", "token expired"))
    report = await QuotaReader(pipeline, StaticToken(sandbox.token), hpc_url=sandbox.base_url, user_name="demo").read()
    assert report.entries == [] and report.error is not None and "refused the token" in report.error
    assert sandbox.token not in report.error
    with pytest.raises(AuthError):
        await QuotaReader(pipeline, StaticToken(None), hpc_url=sandbox.base_url, user_name="demo").read()
    wrong = AccessKeyCredentials(user="demo", access_key=aksk(sandbox).access_key, secret_key="0" * 32)
    ac = AcClient(ac_url=sandbox.base_url, api_url=sandbox.base_url, pipeline=pipeline)
    with pytest.raises(SignInError):  # the token source itself fails: every call would
        await QuotaReader(pipeline, SignedInToken(ac, wrong), hpc_url=sandbox.base_url).read()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"path": "/h", "threshold": 1}, "data is dict, not a list", id="object"),
        pytest.param(None, "data is null, not a list", id="null"),
        pytest.param([{"path": "/h", "threshold": "lots"}], "0.threshold:", id="threshold-not-a-number"),
        pytest.param(["/h"], "0:", id="element-not-an-object"),
        pytest.param([], "reported no quota for the user 'u'", id="empty"),
    ],
)
async def test_a_malformed_quota_answer_is_quota_unknown(data: object, expected: str) -> None:
    """Shapes the sandbox never sends: httpx.MockTransport answers them."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/hpc/openapi/v2/parastor/quota/usernames/u"
        return httpx.Response(200, json={"code": "0", "msg": "success", "data": data})

    p = RequestPipeline(retry=FAST, http_transport=httpx.MockTransport(handler))
    try:
        report = await QuotaReader(
            p, StaticToken("t0ken-value"), hpc_url="https://hpc.example/hpc", user_name="u"
        ).read()
    finally:
        await p.aclose()
    assert report.entries == [] and report.error is not None
    assert report.error.startswith("quota is unknown:") and expected in report.error


async def test_the_composition_root_builds_it_from_settings_on_the_efile_transport(
    sandbox: RunningSandbox,
) -> None:
    transport = EfileTransport(sandbox.base_url, StaticToken(sandbox.token), retry=FAST)
    tokens = transport.tokens
    try:
        settings = Settings(
            token=sandbox.token, base_url=sandbox.base_url, scnet_hpc_url=f"{sandbox.base_url}/hpc", scnet_user="demo"
        )
        report = await QuotaReader.for_settings(settings, tokens=tokens, transport=transport).read()
        assert report.error is None and report.entries[0].path == sandbox.home
        plain = Settings(token=sandbox.token, base_url=sandbox.base_url)
        report = await QuotaReader.for_settings(plain, tokens=tokens, transport=transport).read()
        assert (
            report.error is not None
            and "with EFILE_TOKEN and EFILE_BASE_URL efile-mcp asks no SCNet center" in report.error
        )
        ac = AcClient(ac_url=sandbox.base_url, api_url=sandbox.base_url, pipeline=transport.pipeline)
        report = await QuotaReader.for_settings(plain, ac=ac, tokens=tokens, transport=transport).read()
        assert report.error is None and isinstance(report, QuotaReport)
    finally:
        await transport.aclose()
