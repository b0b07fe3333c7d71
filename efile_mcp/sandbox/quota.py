"""The HPC quota call of the sandbox: `GET /hpc/openapi/v2/parastor/quota/usernames/{username}`.

`data` is an array with one element for the home path: `threshold` (the quota) and `usage` in GB.
Usage is measured from DIR: the apparent size (st_size) of its regular files, links not followed,
in GB of 1024**3 bytes (binary: storage systems count so), rounded to 9 decimals (about a byte: a
small sample tree still shows a usage). Apparent size rather than allocated blocks because
it is what a person adding up their files' sizes would expect, and it does not depend on the local
file system the sandbox happens to run on. A measurement walks the whole tree, so it is reused for
`quota_cache_seconds`; usage above the threshold is reported as is (the platform allows it).
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from efile_mcp.sandbox.envelope import ApiError
from efile_mcp.sandbox.fs import regular_file_bytes

if TYPE_CHECKING:
    from efile_mcp.sandbox.service import Sandbox

GB = 1024**3
#: Decimals of the reported usage: 1e-9 GB is about a byte.
USAGE_DECIMALS = 9


@dataclass
class _Measurement:
    taken_at: float
    usage_gb: float


class QuotaService:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._last: _Measurement | None = None
        self._measuring: asyncio.Lock | None = None
        #: Walks of DIR done to measure usage (each one reads the whole tree).
        self.measurements = 0

    async def usage_gb(self) -> float:
        config = self._sandbox.config
        if self._measuring is None:
            self._measuring = asyncio.Lock()
        # One walk at a time: concurrent callers of a stale cache wait for the same measurement.
        async with self._measuring:
            now = config.quota_clock()
            last = self._last
            if last is None or now - last.taken_at >= config.quota_cache_seconds:
                used = await anyio.to_thread.run_sync(regular_file_bytes, self._sandbox.fs.root)
                self.measurements += 1
                last = self._last = _Measurement(now, round(used / GB, USAGE_DECIMALS))
            return last.usage_gb

    async def answer(self, username: str) -> list[dict[str, Any]]:
        """`data` of the quota call for `username`."""
        config = self._sandbox.config
        if config.quota_refused:
            raise ApiError("10009", "no permission for this call")
        if username != config.user:
            raise ApiError("911009", f"region user does not exist: {username}")
        return [
            {
                "quotaId": zlib.crc32(config.user.encode()) % 1_000_000,
                "username": config.user,
                "path": self._sandbox.home,
                "threshold": config.quota_threshold_gb,
                "usage": await self.usage_gb(),
            }
        ]
