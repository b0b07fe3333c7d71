"""The signed-in region token: obtained on first use, renewed ahead of expiry, replaced when refused."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import anyio

from ..errors import (
    ApiError,
    EfileMcpError,
    SignInError,
    TransportError,
    UnreachableError,
)
from ..models.wire import RegionToken
from .signin import (
    AccessKeyCredentials,
    AcClient,
    Credentials,
    choose_region,
    describe,
    region_label,
    token_expiry,
)

log = logging.getLogger("efile_mcp.client.token_source")

#: Renew when less than this share of the token's lifetime is left, but never more than
#: RENEW_AHEAD_MAX seconds early: a 12 h token is renewed 5 min ahead, a 2 s test token 0.2 s ahead.
RENEW_AHEAD_SHARE = 0.1
RENEW_AHEAD_MAX = 300.0
#: After a failed renewal while the token still works, wait this long before trying again.
RENEW_RETRY_AFTER = 30.0


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

    def secrets(self) -> tuple[str, ...]:
        """The credentials behind the token (AK and SK, or password and orgId): never echoed back."""
        return self._credentials.secrets()

    @property
    def auth_fix(self) -> str:
        where = region_label(self.region, with_state=False) if self.region else "the region"
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
                f"SCNet refused the sign-in as {credentials.user!r} ({describe(exc)}). Check {credentials.settings}."
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
        log.info("signed in to SCNet as %r, region %s", credentials.user, region_label(self.region, with_state=False))

    async def _renew(self) -> None:
        assert self._token is not None
        try:
            fresh = await self._ac.renew(self._token, self.region.cluster_id if self.region else None)
        except EfileMcpError as exc:
            log.info("renewing the SCNet token failed (%s); signing in again", describe(exc))
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
