"""Signing in to SCNet, keeping the region token fresh, and finding the region's efile URL and home.

    AcClient          the AC calls: AK/SK or user/password sign-in, tokens/next, center
    SignedInToken     a TokenSource: signs in on first use, renews ahead of expiry, signs in again on refusal
    RegionLocator     asks the center once for the efile URL and the home directory

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

import anyio
import httpx2 as httpx
from pydantic import ValidationError

from ..errors import (
    ApiError,
    AuthError,
    EfileMcpError,
    MalformedResponseError,
    SignInError,
    TransportError,
    UnreachableError,
)
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
from .transport import RenewableTokenSource, RequestPipeline, RetryPolicy, Service, TokenSource

log = logging.getLogger("efile_mcp.client.auth")

#: Renew when less than this share of the token's lifetime is left, but never more than
#: RENEW_AHEAD_MAX seconds early: a 12 h token is renewed 5 min ahead, a 2 s test token 0.2 s ahead.
RENEW_AHEAD_SHARE = 0.1
RENEW_AHEAD_MAX = 300.0
#: After a failed renewal while the token still works, wait this long before trying again.
RENEW_RETRY_AFTER = 30.0


# ---------------------------------------------------------------------------------------------------
# Credentials and the pieces of the protocol


@dataclass(frozen=True)
class AccessKeyCredentials:
    """AK/SK sign-in (`POST /api/user/v3/tokens`), the one SCNet recommends."""

    user: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    settings = "SCNET_USER, SCNET_ACCESS_KEY and SCNET_SECRET_KEY"


@dataclass(frozen=True)
class PasswordCredentials:
    """The older user/password/orgId sign-in (`POST /ac/openapi/v2/tokens`)."""

    user: str
    password: str = field(repr=False)
    org_id: str = field(repr=False)

    settings = "SCNET_USER, SCNET_PASSWORD and SCNET_ORG_ID"


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


def _region_label(region: RegionToken, *, with_state: bool = True) -> str:
    name = region.cluster_name or "unnamed"
    state = ""
    if with_state:
        state = "platform only" if region.cluster_id == PLATFORM_CLUSTER_ID else "suspended" if not region.token else ""
    return f"{name} (id {region.cluster_id}{', ' + state if state else ''})"


def choose_region(regions: Sequence[RegionToken], wanted: str | None) -> RegionToken:
    """The region to use: SCNET_REGION (a name or a cluster id), else the account's only usable region."""
    listing = "; ".join(_region_label(r) for r in regions) or "none"
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
                f"the account is suspended in region {_region_label(region)}: SCNet gave no token for it. "
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


def _describe(exc: EfileMcpError) -> str:
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
                "signature": aksk_signature(credentials.user, credentials.access_key, credentials.secret_key, timestamp),
            }
            endpoint, secrets = AKSK_TOKENS, (credentials.access_key, credentials.secret_key)
            data = await self._request("POST", API_SERVICE, self.api_url, AKSK_TOKENS, headers=headers, secrets=secrets)
        else:
            headers = {"user": credentials.user, "password": credentials.password, "orgId": credentials.org_id}
            endpoint, secrets = AC_TOKENS, (credentials.password, credentials.org_id)
            data = await self._request("POST", AC_SERVICE, self.ac_url, AC_TOKENS, headers=headers, secrets=secrets)
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
            regions = [r for r in self._regions(AC_TOKENS_NEXT, data) if r.token and r.cluster_id != PLATFORM_CLUSTER_ID]
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


# ---------------------------------------------------------------------------------------------------
# The token source


class SignedInToken:
    """A region token obtained by signing in, kept fresh for as long as the server runs.

    - first use: sign in, choose the region (SCNET_REGION, or the only usable one);
    - ahead of expiry (`expireTime` in the token): tokens/next, falling back to a fresh sign-in;
    - a token the API refused: `refresh` signs in again, once for all callers that saw that token.
    """

    def __init__(
        self,
        ac: AcClient,
        credentials: Credentials,
        region: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ac = ac
        self._credentials = credentials
        self._wanted = region
        self._clock = clock
        self._lock = anyio.Lock()
        self._token: str | None = None
        self._expires_at: float | None = None
        self._renew_at = math.inf
        # Callers that waited for the lock while a sign-in failed get that failure, not one more
        # attempt each: repeated failed sign-ins can lock an SCNet account.
        self._attempts = 0
        self._failure: SignInError | None = None
        #: The chosen region (its token left out); None before the first sign-in.
        self.region: RegionToken | None = None
        self.sign_ins = 0
        self.renewals = 0

    def __repr__(self) -> str:
        return f"SignedInToken(user={self._credentials.user!r}, region={self._wanted!r})"

    @property
    def auth_fix(self) -> str:
        where = _region_label(self.region, with_state=False) if self.region else "the region"
        return (
            f"efile-mcp signed in again as {self._credentials.user!r} and the efile API refused the fresh token "
            f"too: check that the account may use {where} (SCNET_REGION) and is not suspended, then restart "
            "efile-mcp."
        )

    async def token(self) -> str:
        if self._token is None or self._clock() >= self._renew_at:
            seen = self._attempts
            async with self._lock:
                if self._token is None:
                    self._raise_failure_since(seen)
                    await self._sign_in()
                elif self._clock() >= self._renew_at:
                    self._raise_failure_since(seen)
                    await self._renew()
        assert self._token is not None
        return self._token

    async def refresh(self, rejected: str) -> str:
        seen = self._attempts
        async with self._lock:
            if self._token is not None and self._token != rejected:
                return self._token  # another caller already replaced the refused token
            self._raise_failure_since(seen)
            await self._sign_in()
            assert self._token is not None
            return self._token

    def _raise_failure_since(self, seen: int) -> None:
        if self._attempts != seen and self._failure is not None:
            raise SignInError(str(self._failure))

    async def _sign_in(self) -> None:
        self._attempts += 1
        try:
            await self._sign_in_once()
        except SignInError as exc:
            self._failure = exc
            raise
        self._failure = None

    async def _sign_in_once(self) -> None:
        credentials = self._credentials
        try:
            regions = await self._ac.sign_in(credentials)
        except ApiError as exc:
            raise SignInError(
                f"SCNet refused the sign-in as {credentials.user!r} ({_describe(exc)}). Check {credentials.settings}."
            ) from None
        except UnreachableError as exc:
            raise SignInError(f"could not sign in to SCNet: {exc}") from None
        except TransportError as exc:
            raise SignInError(
                f"could not sign in to SCNet at {self._ac.sign_in_url(credentials)}: {exc}. Check "
                f"{'SCNET_API_URL' if isinstance(credentials, AccessKeyCredentials) else 'SCNET_AC_URL'} "
                "and the network, then try again."
            ) from None
        # Once chosen, the region stays the same across sign-ins, even when it was picked automatically.
        chosen = choose_region(regions, self.region.cluster_id if self.region else self._wanted)
        assert chosen.token is not None
        self.sign_ins += 1
        self.region = chosen.model_copy(update={"token": None})
        self._accept(chosen.token)
        log.info("signed in to SCNet as %r, region %s", credentials.user, _region_label(self.region, with_state=False))

    async def _renew(self) -> None:
        assert self._token is not None
        try:
            fresh = await self._ac.renew(self._token, self.region.cluster_id if self.region else None)
        except EfileMcpError as exc:
            log.info("renewing the SCNet token failed (%s); signing in again", _describe(exc))
        else:
            self.renewals += 1
            self._accept(fresh)
            log.info("renewed the SCNet token")
            return
        try:
            await self._sign_in()
        except SignInError as exc:
            now = self._clock()
            if self._expires_at is None or now >= self._expires_at:
                raise
            # The current token still works: keep using it, and try again soon rather than on every request.
            self._renew_at = min(self._expires_at, now + RENEW_RETRY_AFTER)
            log.warning("could not renew the SCNet token yet (%s); the current one is still valid", exc)

    def _accept(self, token: str) -> None:
        now = self._clock()
        expiry = token_expiry(token)
        self._token = token
        if expiry is None or expiry <= now:
            # No usable timing (or a clock far off the server's): renew only when the API refuses it.
            self._expires_at, self._renew_at = None, math.inf
            return
        lifetime = expiry - now
        self._expires_at = expiry
        self._renew_at = expiry - min(RENEW_AHEAD_SHARE * lifetime, RENEW_AHEAD_MAX)


# ---------------------------------------------------------------------------------------------------
# Region discovery


@dataclass(frozen=True)
class Region:
    """What the center says about the region: its efile URL (None if none is enabled) and the home."""

    efile_url: str | None
    home: str | None


class RegionLocator:
    """Asks the SCNet center, once, where the region's efile service is and where the home is.

    A failure reaches the callers already waiting for it, and is not remembered: the next call asks again.
    An explicit EFILE_BASE_URL wins over the center.
    """

    def __init__(self, ac: AcClient, tokens: TokenSource, *, efile_url: str | None = None) -> None:
        self._ac = ac
        self._tokens = tokens
        self._efile_url = efile_url
        self._lock = anyio.Lock()
        self._found: Region | None = None
        self._attempts = 0
        self._failure: SignInError | None = None

    async def locate(self) -> Region:
        if self._found is None:
            seen = self._attempts
            async with self._lock:
                if self._found is None:
                    if self._attempts != seen and self._failure is not None:
                        raise SignInError(str(self._failure))  # failed while this caller waited: not again
                    self._attempts += 1
                    try:
                        self._found = await self._ask_center()
                    except SignInError as exc:
                        self._failure = exc
                        raise
        return self._found

    async def efile_base_url(self) -> str:
        if self._efile_url:
            return self._efile_url
        url = (await self.locate()).efile_url
        if not url:
            raise SignInError(
                f"the SCNet center ({self._ac.ac_url}) lists no enabled efile URL for this region: the file "
                "service may be down or not offered there. Try again later, choose another region (SCNET_REGION), "
                "or set EFILE_BASE_URL."
            )
        return url

    async def home(self) -> str:
        home = (await self.locate()).home
        if not home:
            raise SignInError(
                "the SCNet center did not say where the home directory is, so '~' in EFILE_ALLOWED_ROOTS "
                "cannot be resolved: write those roots as absolute paths."
            )
        return home

    def _cluster_id(self) -> str | None:
        """The region signed in to, when known (else the token's own `clusterId` claim is used)."""
        region = getattr(self._tokens, "region", None)
        return region.cluster_id if isinstance(region, RegionToken) else None

    async def _ask_center(self) -> Region:
        token = await self._tokens.token()
        if not token:
            raise SignInError("no token to ask the SCNet center with: set EFILE_TOKEN, or sign in with SCNET_USER")
        try:
            info = await self._ac.center(self._tokens, self._cluster_id())
        except SignInError:
            raise
        except AuthError as exc:
            fix = (
                "a freshly signed-in token was refused too, so check that the account may use this region "
                "(SCNET_REGION)"
                if isinstance(self._tokens, RenewableTokenSource)
                else "set a fresh EFILE_TOKEN"
            )
            raise SignInError(
                f"the SCNet center at {self._ac.ac_url} refused the token ({_describe(exc)}): {fix}; "
                "or set EFILE_BASE_URL and use absolute EFILE_ALLOWED_ROOTS, which need no center."
            ) from None
        except UnreachableError as exc:
            raise SignInError(
                f"could not find the region's file service: {exc} Or set EFILE_BASE_URL (with absolute "
                "EFILE_ALLOWED_ROOTS), which needs no center."
            ) from None
        except (ApiError, TransportError) as exc:
            raise SignInError(
                f"could not find the region's file service: the SCNet center at {self._ac.ac_url} answered "
                f"{_describe(exc)}. Check SCNET_AC_URL and the network, or set EFILE_BASE_URL."
            ) from None
        url = info.efile_url
        if url and not url.startswith(("http://", "https://")):
            raise SignInError(f"the SCNet center gave an efile URL efile-mcp cannot use ({url!r}); set EFILE_BASE_URL")
        log.info("SCNet center: efile at %s, home %s", url, info.home_path)
        return Region(efile_url=url, home=info.home_path)
