"""Signing in to SCNet: the credentials, the AK/SK signature, the region tokens and the AC calls.

    AccessKeyCredentials, PasswordCredentials   what the person gives (SCNET_*)
    aksk_signature, token_expiry, choose_region the pieces of the protocol
    AcClient                                     the AC calls: sign-in, tokens/next, center

Nothing here runs before the first tool call that needs it: the server starts without the network.
No secret (secret key, password, token) ever reaches a message, a log line or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
from pydantic import ValidationError

from ..errors import ApiError, EfileMcpError, MalformedResponseError, SignInError
from ..models.wire import (
    AC_CENTER,
    AC_TOKENS,
    AC_TOKENS_NEXT,
    AKSK_TOKENS,
    PLATFORM_CLUSTER_ID,
    CenterInfo,
    RegionToken,
    TokenClaims,
)
from .transport import RequestPipeline, RetryPolicy, Service, TokenSource

log = logging.getLogger("efile_mcp.client.signin")


# ---------------------------------------------------------------------------------------------------
# Credentials and the pieces of the protocol


@dataclass(frozen=True)
class AccessKeyCredentials:
    """AK/SK sign-in (`POST /api/user/v3/tokens`), the one SCNet recommends."""

    user: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    settings = "SCNET_USER, SCNET_ACCESS_KEY and SCNET_SECRET_KEY"

    def secrets(self) -> tuple[str, ...]:
        """What must never come back in a message."""
        return (self.access_key, self.secret_key)


@dataclass(frozen=True)
class PasswordCredentials:
    """The older user/password/orgId sign-in (`POST /ac/openapi/v2/tokens`)."""

    user: str
    password: str = field(repr=False)
    org_id: str = field(repr=False)

    settings = "SCNET_USER, SCNET_PASSWORD and SCNET_ORG_ID"

    def secrets(self) -> tuple[str, ...]:
        """What must never come back in a message."""
        return (self.password, self.org_id)


Credentials = AccessKeyCredentials | PasswordCredentials


def aksk_message(user: str, access_key: str, timestamp: str) -> str:
    """The signed message: compact JSON, keys in this order, no spaces, non-ASCII kept as UTF-8."""
    return json.dumps(
        {"accessKey": access_key, "timestamp": timestamp, "user": user}, separators=(",", ":"), ensure_ascii=False
    )


def aksk_signature(user: str, access_key: str, secret_key: str, timestamp: str) -> str:
    """Lowercase hex HMAC-SHA256 of `aksk_message`, keyed with the secret key."""
    message = aksk_message(user, access_key, timestamp).encode("utf-8")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def token_claims(token: str) -> TokenClaims | None:
    """The JWT payload of a region token, unverified (the key is the server's); None when unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        return TokenClaims.model_validate_json(payload)
    except (ValueError, binascii.Error, ValidationError):
        return None


def token_cluster_id(token: str) -> str | None:
    claims = token_claims(token)
    return claims.cluster_id if claims else None


def token_expiry(token: str) -> float | None:
    """When a region token expires (epoch seconds), from its JWT payload; None when that cannot be read.

    The signature is not checked and cannot be (the key is the server's): the time is used only to
    renew early. Whether the token is good is for the API to say.
    """
    claims = token_claims(token)
    if claims is None:
        return None
    try:
        expiry = int(claims.expire_time or "") / 1000
    except (ValueError, OverflowError):
        return None
    return expiry if math.isfinite(expiry) and expiry > 0 else None


def region_label(region: RegionToken, *, with_state: bool = True) -> str:
    name = region.cluster_name or "unnamed"
    state = ""
    if with_state:
        state = "platform only" if region.cluster_id == PLATFORM_CLUSTER_ID else "suspended" if not region.token else ""
    return f"{name} (id {region.cluster_id}{', ' + state if state else ''})"


def choose_region(regions: Sequence[RegionToken], wanted: str | None) -> RegionToken:
    """The region to use: SCNET_REGION (a name or a cluster id), else the account's only usable region."""
    listing = "; ".join(region_label(r) for r in regions) or "none"
    if wanted and wanted.strip():
        key = wanted.strip()
        matches = (
            [r for r in regions if r.cluster_id == key]
            or [r for r in regions if (r.cluster_name or "").strip() == key]
            or [r for r in regions if (r.cluster_name or "").strip().casefold() == key.casefold()]
        )
        if not matches:
            raise SignInError(
                f"SCNET_REGION={key!r} is none of this account's regions: {listing}. "
                "Set SCNET_REGION to one of these names or ids."
            )
        region = matches[0]
        if region.cluster_id == PLATFORM_CLUSTER_ID:
            raise SignInError(
                f"SCNET_REGION={key!r} is the platform region, which has no file service. "
                f"Set SCNET_REGION to a computing region: {listing}."
            )
        if not region.token:
            raise SignInError(
                f"the account is suspended in region {region_label(region)}: SCNet gave no token for it. "
                f"Top the account up, or set SCNET_REGION to another region: {listing}."
            )
        return region
    usable = [r for r in regions if r.usable]
    if len(usable) == 1:
        return usable[0]
    if not usable:
        raise SignInError(
            f"the account has no region with file access: {listing}. A suspended account gets no token "
            "until it is topped up."
        )
    raise SignInError(
        f"the account has {len(usable)} regions; set SCNET_REGION to the name or id of the one to use: {listing}."
    )


def describe(exc: EfileMcpError) -> str:
    """An error from the AC service without the efile-specific advice AuthError carries."""
    if isinstance(exc, ApiError):
        detail = f": {exc.server_msg}" if exc.server_msg and exc.server_msg != exc.meaning else ""
        return f"code {exc.code} ({exc.meaning}){detail}"
    return str(exc)


# ---------------------------------------------------------------------------------------------------
# The AC calls

AC_SERVICE = Service("SCNet AC service", "SCNET_AC_URL", "Check SCNET_AC_URL and the network.")
API_SERVICE = Service("SCNet API", "SCNET_API_URL", "Check SCNET_API_URL and the network.")


class AcClient:
    """HTTP calls to the SCNet AC service. Answers use the efile envelope; transient failures are retried."""

    def __init__(
        self,
        *,
        ac_url: str,
        api_url: str,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        pipeline: RequestPipeline | None = None,
    ) -> None:
        """`pipeline`: send through another client's pipeline (and its HTTP connections); else one of its own."""
        self.ac_url = ac_url.strip().rstrip("/")
        self.api_url = api_url.strip().rstrip("/")
        self._clock = clock
        self._owns_pipeline = pipeline is None
        self._pipeline = pipeline or RequestPipeline(timeout=timeout, retry=retry, http_transport=http_transport)

    async def aclose(self) -> None:
        if self._owns_pipeline:
            await self._pipeline.aclose()

    def sign_in_url(self, credentials: Credentials) -> str:
        if isinstance(credentials, AccessKeyCredentials):
            return self.api_url + AKSK_TOKENS
        return self.ac_url + AC_TOKENS

    async def sign_in(self, credentials: Credentials) -> list[RegionToken]:
        """Every region of the account with its token (null where the account is suspended)."""
        if isinstance(credentials, AccessKeyCredentials):
            timestamp = str(int(self._clock()))
            headers = {
                "user": credentials.user,
                "accessKey": credentials.access_key,
                "timestamp": timestamp,
                "signature": aksk_signature(
                    credentials.user, credentials.access_key, credentials.secret_key, timestamp
                ),
            }
            endpoint = AKSK_TOKENS
            data = await self._request(
                "POST", API_SERVICE, self.api_url, AKSK_TOKENS, headers=headers, secrets=credentials.secrets()
            )
        else:
            headers = {"user": credentials.user, "password": credentials.password, "orgId": credentials.org_id}
            endpoint = AC_TOKENS
            data = await self._request(
                "POST", AC_SERVICE, self.ac_url, AC_TOKENS, headers=headers, secrets=credentials.secrets()
            )
        if not isinstance(data, list):
            raise MalformedResponseError(endpoint, "expected a list of regions")
        return self._regions(endpoint, data)

    async def renew(self, token: str, cluster_id: str | None) -> str:
        """A fresh token for the region of `token` (possible until it has been expired for 24 h)."""
        data = await self._request("POST", AC_SERVICE, self.ac_url, AC_TOKENS_NEXT, headers={"token": token})
        # The docs show a list of regions; a bare token or {"token": ...} is accepted as well.
        if isinstance(data, str) and data:
            return data
        if isinstance(data, dict) and isinstance(data.get("token"), str) and data["token"]:
            return str(data["token"])
        if isinstance(data, list):
            regions = [
                r for r in self._regions(AC_TOKENS_NEXT, data) if r.token and r.cluster_id != PLATFORM_CLUSTER_ID
            ]
            # A lone entry is taken only when our region is not known: a token for another region is no renewal.
            same = [r for r in regions if r.cluster_id == cluster_id] or (
                regions if len(regions) == 1 and cluster_id is None else []
            )
            if same and same[0].token:
                return same[0].token
        raise MalformedResponseError(AC_TOKENS_NEXT, "no token for this region in the answer")

    async def center(self, tokens: TokenSource, cluster_id: str | None = None) -> CenterInfo:
        """The center's answer for the region of `tokens`' token (renewed once if refused)."""
        data = await self._request("GET", AC_SERVICE, self.ac_url, AC_CENTER, tokens=tokens)
        if cluster_id is None:
            token = await tokens.token()
            cluster_id = token_cluster_id(token) if token else None
        try:
            return CenterInfo.from_data(data, cluster_id)
        except ValidationError as exc:
            raise MalformedResponseError(AC_CENTER, exc.errors()[0]["msg"]) from None
        except ValueError as exc:
            raise MalformedResponseError(AC_CENTER, str(exc)) from None

    @staticmethod
    def _regions(endpoint: str, data: list[Any]) -> list[RegionToken]:
        try:
            return [RegionToken.model_validate(item) for item in data]
        except ValidationError as exc:
            raise MalformedResponseError(endpoint, exc.errors()[0]["msg"]) from None

    async def _request(
        self,
        method: str,
        service: Service,
        base_url: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        tokens: TokenSource | None = None,
        secrets: tuple[str, ...] = (),
    ) -> Any:
        return await self._pipeline.send(
            method, base_url, path, service=service, tokens=tokens, headers=headers, secrets=secrets
        )
