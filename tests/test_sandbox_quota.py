"""The HPC quota call of the sandbox, and the center answer that leads to it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx2
import pytest

from efile_mcp.models.wire import AC_CENTER, QUOTA, CenterInfo, Envelope, QuotaEntry
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.sandbox.ac import AcConfig

from .clocks import ManualClock as FakeClock
from .test_sandbox import anyio_backend, api

__all__ = ["anyio_backend", "api"]

GB = 1024**3


def sparse(path: Path, size: int) -> None:
    """A file of `size` bytes that takes no disk space: usage counts the apparent size."""
    with open(path, "wb") as handle:
        handle.truncate(size)


def tree_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


async def quota(api: httpx2.AsyncClient, username: str = "demo") -> dict[str, Any]:
    response = await api.get(QUOTA.format(username=username))
    assert response.status_code == 200
    return response.json()


async def test_quota_reports_the_home_with_usage_measured_from_dir(
    sandbox: RunningSandbox, api: httpx2.AsyncClient, tmp_path: Path
) -> None:
    sparse(sandbox.root / "scratch" / "big.bin", int(1.5 * GB))
    (tmp_path / "outside.bin").touch()
    sparse(tmp_path / "outside.bin", 7 * GB)
    os.symlink(tmp_path / "outside.bin", sandbox.root / "link.bin")  # a link is not followed
    body = await quota(api)
    assert body["code"] == "0" and body["msg"] == "success"
    (entry,) = body["data"]
    assert set(entry) == {"quotaId", "username", "path", "threshold", "usage"}
    assert entry["path"] == sandbox.home and entry["username"] == "demo" and entry["threshold"] == 300
    assert entry["usage"] == round(tree_bytes(sandbox.root) / GB, 9) == pytest.approx(1.5, abs=0.001)
    assert QuotaEntry.model_validate(entry).usage == entry["usage"]


@pytest.mark.parametrize("sandbox", [{"quota_threshold_gb": 1}], indirect=True)
async def test_usage_above_the_threshold_is_reported_as_is(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    sparse(sandbox.root / "big.bin", 3 * GB)
    (entry,) = (await quota(api))["data"]
    assert entry["threshold"] == 1 and entry["usage"] == pytest.approx(3.0, abs=0.001)


CLOCK = FakeClock(1000.0)


@pytest.mark.parametrize("sandbox", [{"quota_clock": CLOCK, "quota_cache_seconds": 5}], indirect=True)
async def test_usage_is_measured_afresh_once_the_cache_is_stale(
    sandbox: RunningSandbox, api: httpx2.AsyncClient
) -> None:
    sparse(sandbox.root / "a.bin", 2 * GB)
    first = (await quota(api))["data"][0]["usage"]
    sparse(sandbox.root / "b.bin", 1 * GB)
    CLOCK.now += 4.9
    assert (await quota(api))["data"][0]["usage"] == first  # within the cache window: not walked again
    assert sandbox.sandbox.quota.measurements == 1
    CLOCK.now += 0.2
    assert (await quota(api))["data"][0]["usage"] == round(first + 1, 9)
    assert sandbox.sandbox.quota.measurements == 2


@pytest.mark.parametrize("sandbox", [{"quota_refused": True}], indirect=True)
async def test_quota_refused_answers_10009(api: httpx2.AsyncClient) -> None:
    body = await quota(api)
    assert (body["code"], body["data"]) == ("10009", None) and "permission" in body["msg"]


async def test_unknown_username_and_missing_token(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    body = await quota(api, "someone-else")
    assert body["code"] == "911009" and "someone-else" in body["msg"]
    async with httpx2.AsyncClient(base_url=sandbox.base_url) as anonymous:
        refused = (await anonymous.get(QUOTA.format(username="demo"))).json()
    assert refused["code"] == "911406"
    assert sandbox.sandbox.request_counts["quota"] == 2


async def test_center_leads_to_the_quota_call(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    center = CenterInfo.from_data(Envelope.model_validate((await api.get(AC_CENTER)).json()).data)
    assert center.hpc_url == f"{sandbox.base_url}/hpc" and center.user_name == "demo"
    assert center.efile_url == f"{sandbox.base_url}/efile"
    # The URL ends in /hpc: the quota path is appended after it, /hpc once.
    url = center.hpc_url.removesuffix("/hpc") + QUOTA.format(username=center.user_name)
    assert (await api.get(url)).json()["data"][0]["path"] == sandbox.home


@pytest.mark.parametrize(
    "sandbox",
    [{"ac": AcConfig(hpc_urls=({"url": "{base}", "enable": False}, {"url": "{base}/", "enable": True}))}],
    indirect=True,
)
async def test_hpc_urls_are_configurable(sandbox: RunningSandbox, api: httpx2.AsyncClient) -> None:
    data = (await api.get(AC_CENTER)).json()["data"]
    assert data["hpcUrls"] == [
        {"url": sandbox.base_url, "enable": False},
        {"url": f"{sandbox.base_url}/", "enable": True},
    ]
    assert CenterInfo.from_data(data).hpc_url == f"{sandbox.base_url}/"


async def test_an_unknown_quota_names_its_real_cause_once(make_settings: Any) -> None:
    """With EFILE_TOKEN and EFILE_BASE_URL alone no center is asked: the answer says so, once."""
    from mcp import Client

    from efile_mcp.server import build_server

    async with Client(build_server(make_settings())) as client:
        result = await client.call_tool("storage_status", {})
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert result.structured_content is not None
    error = result.structured_content["quota_error"]
    assert error.startswith("quota is unknown: with EFILE_TOKEN and EFILE_BASE_URL")
    assert "SCNET_HPC_URL" in error
    assert text.lower().count("quota is unknown") == 1, text
    assert text.lower().count("quota unknown") == 0, text
