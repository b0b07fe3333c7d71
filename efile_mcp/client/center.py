"""Where the region's services are and who the user is there, as the SCNet center says; and the quota.

    RegionLocator     asks the center once: the efile URL, the HPC URL, the home, the cluster user name
    QuotaReader       the quota of the cluster user, from the region's HPC API; never raises for a quota problem

An explicit EFILE_BASE_URL (SCNET_HPC_URL) wins over the center for the efile (HPC) URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
from pydantic import ValidationError

from ..errors import (
    MISSING_TOKEN,
    ApiError,
    AuthError,
    SignInError,
    TransportError,
    UnreachableError,
)
from ..models.wire import HPC_PREFIX, QUOTA, QuotaEntry, RegionToken
from .signin import AcClient, describe
from .transport import (
    EfileTransport,
    RenewableTokenSource,
    RequestPipeline,
    Service,
    TokenSource,
    normalise_base_url,
)

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger("efile_mcp.client.center")


@dataclass(frozen=True)
class Region:
    """What the center says about the region: its efile and HPC URLs (None if none is enabled), the home,
    and the cluster user name."""

    efile_url: str | None
    home: str | None
    hpc_url: str | None = None
    user_name: str | None = None


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
        log.info("SCNet center: efile at %s, HPC at %s, home %s", url, info.hpc_url, info.home_path)
        return Region(efile_url=url, home=info.home_path, hpc_url=info.hpc_url, user_name=info.user_name)


# ---------------------------------------------------------------------------------------------------
# Quota

HPC_FIX = "Check SCNET_HPC_URL (or the region the SCNet center reports) and the network."
#: The HPC API at a configured SCNET_HPC_URL.
HPC_SERVICE = Service("SCNet HPC API", "SCNET_HPC_URL", HPC_FIX, HPC_PREFIX, "/hpc")
#: The HPC API at the URL the SCNet center reported.
HPC_DISCOVERED = Service("SCNet HPC API", "the HPC URL the SCNet center reports", HPC_FIX, HPC_PREFIX, "/hpc")
#: Some accounts may not call the quota endpoint: the HPC API answers this code.
QUOTA_REFUSED_CODE = "10009"
USER_UNKNOWN_CODE = "911009"


@dataclass(frozen=True)
class QuotaReport:
    """The quota entries (a threshold of 0, "unknown", is given as None), or why there are none."""

    entries: list[QuotaEntry] = field(default_factory=list)
    error: str | None = None


class _Unknown(Exception):  # internal: never leaves QuotaReader.read
    """Why the quota cannot be asked for or read; becomes QuotaReport.error."""


class QuotaReader:
    """`GET /hpc/openapi/v2/parastor/quota/usernames/{username}` on the region's HPC base URL.

    The URL is SCNET_HPC_URL, else the center's `hpcUrls`; the user is the center's
    `clusterUserInfo.userName`, else SCNET_USER. Whatever goes wrong with the quota (10009, an
    unreachable HPC URL, no center, a malformed answer) comes back as `QuotaReport.error`: quota
    is extra information, never the reason a tool fails. Only a token source that cannot give a
    token at all (no token, a failed sign-in) raises AuthError, as every other call would.
    """

    def __init__(
        self,
        pipeline: RequestPipeline,
        tokens: TokenSource,
        *,
        locator: RegionLocator | None = None,
        hpc_url: str | None = None,
        user_name: str | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._tokens = tokens
        self._locator = locator
        self._hpc_url = hpc_url.strip() if hpc_url and hpc_url.strip() else None
        self._user_name = user_name.strip() if user_name and user_name.strip() else None

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        *,
        ac: AcClient | None = None,
        tokens: TokenSource,
        locator: RegionLocator | None = None,
        transport: EfileTransport,
    ) -> QuotaReader:
        """The reader the composition root builds: it sends through the efile transport's pipeline
        (its connections, its retry policy), so it has nothing of its own to close.

        Without a locator but with an AC client (sign-in), one is made for the HPC URL and the user.
        With EFILE_TOKEN and EFILE_BASE_URL alone, no center is asked: SCNET_HPC_URL and SCNET_USER say where.
        """
        if locator is None and ac is not None:
            locator = RegionLocator(ac, tokens, efile_url=settings.base_url)
        return cls(
            transport.pipeline, tokens, locator=locator, hpc_url=settings.scnet_hpc_url, user_name=settings.scnet_user
        )

    async def read(self) -> QuotaReport:
        token = await self._tokens.token()  # a sign-in that fails raises here: nothing works without it
        if not token:
            raise AuthError(MISSING_TOKEN, None, endpoint=HPC_PREFIX)
        try:
            base_url, service, user = await self._where()
            data = await self._ask(base_url, service, user)
            return QuotaReport(entries=self._entries(data, user))
        except _Unknown as exc:
            log.info("%s", exc)
            return QuotaReport(error=str(exc))

    async def _where(self) -> tuple[str, Service, str]:
        region: Region | None = None
        center_error: str | None = None
        if self._locator is not None:
            try:
                region = await self._locator.locate()
            except SignInError as exc:
                center_error = str(exc)
        hpc_url = self._hpc_url or (region.hpc_url if region else None)
        user = (region.user_name if region else None) or self._user_name
        if not hpc_url or not user:
            missing = " and ".join(
                setting
                for setting, value in (
                    ("SCNET_HPC_URL (the region's HPC URL)", hpc_url),
                    ("SCNET_USER (the cluster user name)", user),
                )
                if not value
            )
            if center_error is not None:
                why = f"the SCNet center could not be asked ({center_error.rstrip('.')})"
            elif region is not None:
                why = "the SCNet center " + (
                    "lists no enabled HPC URL for this region" if not hpc_url else "did not say the cluster user name"
                )
            else:
                why = "with EFILE_TOKEN and EFILE_BASE_URL efile-mcp asks no SCNet center"
            raise _Unknown(f"quota is unknown: {why}. Set {missing} to read it.")
        if not hpc_url.startswith(("http://", "https://")):
            raise _Unknown(f"quota is unknown: the HPC URL {hpc_url!r} is not an http(s) URL; set SCNET_HPC_URL.")
        service = HPC_SERVICE if self._hpc_url else HPC_DISCOVERED
        return normalise_base_url(hpc_url, "/hpc"), service, user

    async def _ask(self, base_url: str, service: Service, user: str) -> Any:
        path = QUOTA.format(username=quote(user, safe=""))
        try:
            return await self._pipeline.send("GET", base_url, path, service=service, tokens=self._tokens)
        except SignInError:
            raise  # renewing the token failed: the token source itself is broken
        except AuthError as exc:
            if exc.code == MISSING_TOKEN:
                raise
            raise _Unknown(
                f"quota is unknown: the SCNet HPC API at {base_url} refused the token ({describe(exc)}), "
                f"although it was {'renewed' if isinstance(self._tokens, RenewableTokenSource) else 'sent'} "
                f"as for the efile API. Check {service.setting}."
            ) from None
        except ApiError as exc:
            if exc.code == QUOTA_REFUSED_CODE:
                why = f"this account may not read its quota (the SCNet HPC API answered {exc.code}: no permission for this call"
                detail = f"; {exc.server_msg}" if exc.server_msg else ""
                raise _Unknown(
                    f"quota is unknown: {why}{detail}). No setting changes this: see the quota in the SCNet "
                    "console, or ask SCNet to allow the quota call for the account."
                ) from None
            if exc.code == USER_UNKNOWN_CODE:
                raise _Unknown(
                    f"quota is unknown: the SCNet HPC API does not know the user {user!r} ({describe(exc)}). "
                    "Set SCNET_USER to the cluster user name, or check SCNET_HPC_URL is this region's."
                ) from None
            raise _Unknown(f"quota is unknown: the SCNet HPC API answered {describe(exc)}.") from None
        except TransportError as exc:
            fix = "" if isinstance(exc, UnreachableError) else f" Check {service.setting}, or try again later."
            raise _Unknown(f"quota is unknown: {exc}{fix}") from None

    @staticmethod
    def _entries(data: Any, user: str) -> list[QuotaEntry]:
        if not isinstance(data, list):
            raise _Unknown(
                f"quota is unknown: the SCNet HPC API sent a quota answer efile-mcp cannot read "
                f"(data is {type(data).__name__ if data is not None else 'null'}, not a list)."
            )
        entries: list[QuotaEntry] = []
        for index, item in enumerate(data):
            try:
                entry = QuotaEntry.model_validate(item)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in (index, *first["loc"]))
                raise _Unknown(
                    f"quota is unknown: the SCNet HPC API sent a quota answer efile-mcp cannot read ({where}: {first['msg']})."
                ) from None
            if entry.threshold is not None and entry.threshold <= 0:
                entry = entry.model_copy(update={"threshold": None})  # 0: the platform does not know the limit
            entries.append(entry)
        if not entries:
            raise _Unknown(f"quota is unknown: the SCNet HPC API reported no quota for the user {user!r}.")
        return entries
