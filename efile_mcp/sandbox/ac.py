"""The sandbox's SCNet AC service: sign-in, token renewal and region discovery (efile-api.md section 6).

    POST /api/user/v3/tokens        AK/SK sign-in: the HMAC-SHA256 signature and the timestamp are checked
    POST /ac/openapi/v2/tokens      user/password/orgId sign-in
    POST /ac/openapi/v2/tokens/next renews a token that has not been expired for more than `renew_window`
    GET  /ac/openapi/v2/center      the region's efile and HPC URLs (this sandbox), user name and home directory

Tokens are JWT-shaped (HS256 over header.payload with a per-sandbox key), carry `expireTime` (epoch ms,
a string), `clusterId` and `user`, and live `token_ttl` seconds, so tests can watch them expire. The
efile endpoints accept them (and refuse expired ones with 10008) alongside the configured static token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from efile_mcp.models.wire import (
    AC_CENTER,
    AC_TOKENS,
    AC_TOKENS_NEXT,
    AKSK_TOKENS,
    PLATFORM_CLUSTER_ID,
    SUCCESS_CODE,
    Envelope,
    RegionToken,
)
from efile_mcp.sandbox.envelope import ApiError

if TYPE_CHECKING:
    from efile_mcp.sandbox.service import Sandbox


@dataclass(frozen=True)
class SandboxRegion:
    cluster_id: str
    name: str
    #: A suspended account gets the region listed with `token: null`.
    suspended: bool = False


#: The platform region, one region served by this sandbox, and one where the account is suspended:
#: with these, "the only usable region" is the served one.
DEFAULT_REGIONS: tuple[SandboxRegion, ...] = (
    SandboxRegion(PLATFORM_CLUSTER_ID, "ac"),
    SandboxRegion("11250", "sandbox"),
    SandboxRegion("20091", "sandbox-suspended", suspended=True),
)


@dataclass
class AcConfig:
    """The account the AC service knows (its user is `SandboxConfig.user`) and how it behaves."""

    access_key: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    org_id: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    regions: tuple[SandboxRegion, ...] = DEFAULT_REGIONS
    #: Lifetime of an issued token, in seconds.
    token_ttl: float = 3600.0
    #: tokens/next refuses a token that has been expired for longer than this.
    renew_window: float = 24 * 3600.0
    #: AK/SK sign-in refuses a timestamp further than this from the sandbox clock.
    max_clock_skew: float = 300.0
    #: `efileUrls` of the center answer; "{base}" becomes the sandbox's own base URL.
    efile_urls: tuple[dict[str, Any], ...] = ({"url": "{base}/efile", "enable": "true"},)
    #: `hpcUrls` of the center answer (where the quota call goes); "{base}" as for `efile_urls`.
    hpc_urls: tuple[dict[str, Any], ...] = ({"url": "{base}/hpc", "enable": "true"},)
    #: The sandbox's clock for issuing and checking tokens (tests may move it).
    clock: Callable[[], float] = time.time
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)


def _answer(code: str, msg: str | None, data: Any = None) -> JSONResponse:
    return JSONResponse(Envelope(code=code, msg=msg, data=data).model_dump(by_alias=True))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_UNKNOWN_TOKEN = ("911406", "token could not be mapped to a user")


class SandboxAc:
    """State of the AC service of one sandbox: what it issued and revoked. Tests read it from another thread."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        #: Every token handed out, in order.
        self.issued: list[str] = []
        self.revoked: set[str] = set()

    @property
    def config(self) -> AcConfig:
        return self._sandbox.config.ac

    def routes(self) -> list[Route]:
        return [
            Route(AKSK_TOKENS, self._endpoint("tokens-aksk", self._sign_in_aksk), methods=["POST"]),
            Route(AC_TOKENS, self._endpoint("tokens", self._sign_in_password), methods=["POST"]),
            Route(AC_TOKENS_NEXT, self._endpoint("tokens/next", self._renew), methods=["POST"]),
            Route(AC_CENTER, self._endpoint("center", self._center), methods=["GET"]),
        ]

    def revoke_all(self) -> None:
        """Every token issued so far is refused from now on (911406), expired or not: a server-side revocation."""
        with self._sandbox.lock:
            self.revoked.update(self.issued)

    # -- tokens -----------------------------------------------------------------------------------

    def issue(self, region: SandboxRegion) -> str:
        user = self._sandbox.config.user
        expires = self.config.clock() + self.config.token_ttl
        header = _b64(_json({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "computeUser": user,
            "accountStatus": "Normal",
            "creator": "ac",
            "role": "1",
            "expireTime": str(int(expires * 1000)),
            "clusterId": region.cluster_id,
            "user": user,
            "jti": secrets.token_hex(8),  # two tokens issued in the same millisecond still differ
        }
        payload = _b64(_json(claims).encode())
        token = f"{header}.{payload}.{self._mac(header, payload)}"
        with self._sandbox.lock:
            self.issued.append(token)
        return token

    def _mac(self, header: str, payload: str) -> str:
        return _b64(hmac.new(self.config.signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest())

    def _claims(self, token: str) -> dict[str, Any]:
        """The claims of a token this sandbox issued and has not revoked; 911406 for anything else."""
        parts = token.split(".")
        if len(parts) != 3 or not hmac.compare_digest(parts[2], self._mac(parts[0], parts[1])):
            raise ApiError(*_UNKNOWN_TOKEN)
        with self._sandbox.lock:
            if token in self.revoked:
                raise ApiError(*_UNKNOWN_TOKEN)
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            int(claims["expireTime"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ApiError(*_UNKNOWN_TOKEN) from None
        return dict(claims)

    def _expired_for(self, claims: dict[str, Any]) -> float:
        """Seconds since the token expired (negative while it is valid)."""
        return self.config.clock() - int(claims["expireTime"]) / 1000

    def _region(self, cluster_id: str) -> SandboxRegion:
        region = next((r for r in self.config.regions if r.cluster_id == cluster_id), None)
        if region is None:
            raise ApiError(*_UNKNOWN_TOKEN)
        if region.suspended:
            raise ApiError("911009", f"the account is suspended in region {region.name}")
        return region

    def _live_region(self, token: str) -> SandboxRegion:
        claims = self._claims(token)
        if self._expired_for(claims) > 0:
            raise ApiError("10008", "token expired")
        return self._region(str(claims.get("clusterId")))

    def refuse_efile_token(self, token: str) -> Response | None:
        """None when `token` is a live token of a computing region; else the answer that refuses it."""
        try:
            region = self._live_region(token)
        except ApiError as error:
            return _answer(error.code, error.msg)
        if region.cluster_id == PLATFORM_CLUSTER_ID:
            return _answer("911009", "the platform token has no user in this region")
        return None

    # -- endpoints --------------------------------------------------------------------------------

    def _endpoint(
        self, name: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            sandbox = self._sandbox
            with sandbox.lock:
                sandbox.request_counts[name] += 1
            if sandbox.config.delay:
                await anyio.sleep(sandbox.config.delay)
            if sandbox.fault is not None:
                injected = await sandbox.fault(name, request)
                if injected is not None:
                    return injected
            try:
                return await handler(request)
            except ApiError as error:
                return _answer(error.code, error.msg)

        return endpoint

    def _signed_in(self) -> Response:
        """The sign-in answer: every region with its token (null where the account is suspended)."""
        regions = [
            RegionToken(
                clusterId=region.cluster_id,
                clusterName=region.name,
                token=None if region.suspended else self.issue(region),
            ).model_dump(by_alias=True)
            for region in self.config.regions
        ]
        return _answer(SUCCESS_CODE, "success", regions)

    async def _sign_in_aksk(self, request: Request) -> Response:
        headers = request.headers
        user, access_key = headers.get("user", ""), headers.get("accessKey", "")
        timestamp, signature = headers.get("timestamp", ""), headers.get("signature", "")
        if not (user and access_key and timestamp and signature):
            raise ApiError("10003", "user, accessKey, timestamp and signature headers are required")
        config = self.config
        if user != self._sandbox.config.user or not hmac.compare_digest(access_key, config.access_key):
            raise ApiError("10004", "unknown user or access key")
        try:
            stamp = int(timestamp)
        except ValueError:
            raise ApiError("10004", "timestamp must be unix seconds") from None
        if abs(config.clock() - stamp) > config.max_clock_skew:
            raise ApiError("10004", f"timestamp is more than {config.max_clock_skew:.0f} s off the server clock")
        # Written out by hand rather than shared with the client, so a client that signs the wrong
        # message is caught here.
        message = f'{{"accessKey":{_json(access_key)},"timestamp":{_json(timestamp)},"user":{_json(user)}}}'
        expected = hmac.new(config.secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            raise ApiError("10004", "signature does not match")
        return self._signed_in()

    async def _sign_in_password(self, request: Request) -> Response:
        headers = request.headers
        user, password, org_id = headers.get("user", ""), headers.get("password", ""), headers.get("orgId", "")
        if not (user and password and org_id):
            raise ApiError("10003", "user, password and orgId headers are required")
        config = self.config
        if (
            user != self._sandbox.config.user
            or not hmac.compare_digest(password, config.password)
            or not hmac.compare_digest(org_id, config.org_id)
        ):
            raise ApiError("10004", "wrong user name, password or orgId")
        return self._signed_in()

    async def _renew(self, request: Request) -> Response:
        claims = self._claims(request.headers.get("token", ""))
        if self._expired_for(claims) > self.config.renew_window:
            raise ApiError("10008", "token expired too long ago to be renewed: sign in again")
        region = self._region(str(claims.get("clusterId")))
        renewed = RegionToken(clusterId=region.cluster_id, clusterName=region.name, token=self.issue(region))
        return _answer(SUCCESS_CODE, "success", [renewed.model_dump(by_alias=True)])

    async def _center(self, request: Request) -> Response:
        token = request.headers.get("token", "")
        if hmac.compare_digest(token.encode(), self._sandbox.config.token.encode()):
            # The configured static token stands for a token of the region this sandbox serves.
            served = [r for r in self.config.regions if r.cluster_id != PLATFORM_CLUSTER_ID and not r.suspended]
            if not served:
                raise ApiError("911009", "the account has no active region")
            region = served[0]
        else:
            region = self._live_region(token)
        if region.cluster_id == PLATFORM_CLUSTER_ID:
            raise ApiError("911009", "the platform token has no computing region")
        base = str(request.base_url).rstrip("/")

        def urls(entries: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
            return [{**entry, "url": str(entry.get("url", "")).replace("{base}", base)} for entry in entries]

        user = self._sandbox.config.user
        return _answer(
            SUCCESS_CODE,
            "success",
            {
                "id": region.cluster_id,
                "name": region.name,
                "efileUrls": urls(self.config.efile_urls),
                "hpcUrls": urls(self.config.hpc_urls),
                "aiUrls": [],
                "clusterUserInfo": {"userName": user, "homePath": self._sandbox.home},
            },
        )
