"""Where the region's services are and who the user is there, as the SCNet center says.

    RegionLocator     asks the center once: the efile URL, the HPC URL, the home, the cluster user name

An explicit EFILE_BASE_URL (SCNET_HPC_URL) wins over the center for the efile (HPC) URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio

from ..errors import ApiError, AuthError, SignInError, TransportError, UnreachableError
from ..models.wire import RegionToken
from .signin import AcClient, describe
from .transport import RenewableTokenSource, TokenSource

log = logging.getLogger("efile_mcp.client.center")


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
                f"the SCNet center at {self._ac.ac_url} refused the token ({describe(exc)}): {fix}; "
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
                f"{describe(exc)}. Check SCNET_AC_URL and the network, or set EFILE_BASE_URL."
            ) from None
        url = info.efile_url
        if url and not url.startswith(("http://", "https://")):
            raise SignInError(f"the SCNet center gave an efile URL efile-mcp cannot use ({url!r}); set EFILE_BASE_URL")
        log.info("SCNet center: efile at %s, home %s", url, info.home_path)
        return Region(efile_url=url, home=info.home_path)
