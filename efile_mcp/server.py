"""Assemble the MCP server: settings -> path policy, signer, audit (checked now) -> lifespan state -> tools.

Sign-in and region discovery need the network, so they wait for the first tool call that needs them:
start-up stays fast and offline, and a failure there is a tool error, not a dead server.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer, RequestStateSecurity
from pydantic import SecretStr

from . import __version__
from .client import (
    EfileTransport,
    RetryPolicy,
    StaticToken,
    TokenSource,
    normalise_base_url,
)
from .client.api import EfileApi
from .client.center import QuotaReader, RegionLocator
from .client.signin import (
    AccessKeyCredentials,
    AcClient,
    Credentials,
    PasswordCredentials,
)
from .client.token_source import SignedInToken
from .client.walk import Listings
from .errors import ConfigError, EfileMcpError
from .guard.audit import AuditLog, default_audit_path
from .guard.guard import Guard
from .guard.paths import DEFAULT_PROTECTED, PathPolicy, expand_home, is_home_relative
from .guard.quarantine import purge_at_start, purge_dry_run_at_start
from .guard.reconcile import reconcile_at_start
from .guard.sealing import ConfirmationSigner
from .guard.store import StateStore, open_store
from .review import ReviewSite
from .settings import Settings
from .tools.registry import tools_for
from .tools.state import ToolState

INSTRUCTIONS = """\
efile-mcp reaches the person's SCNet supercomputer storage. For a clean-up: storage_status (roots,
quota), disk_usage (what is big), find_paths (what is big and old), then remove_paths with paths or
select as a dry run; show the person what it would remove (a folder's size is its whole tree) and
execute only after they agree, with the dry run's confirmation_token alone. By default a removal
moves paths into a quarantine the person can undo with restore_paths; mode='delete' is permanent.
Follow queued removals with get_task.
"""


log = logging.getLogger("efile_mcp.server")

#: At most this long at start-up to look the allowed roots up (an unreachable URL is reported later, by a tool).
ROOTS_CHECK_SECONDS = 5.0

#: Stands in for the remote home when `~` roots are checked at start-up, before the home is known.
_OFFLINE_HOME = "/home-reported-by-the-scnet-center"


def _credentials(settings: Settings) -> Credentials | None:
    """The sign-in the settings ask for (AK/SK wins over password when both are given), or None."""

    def value(secret: SecretStr | None) -> str:
        return secret.get_secret_value().strip() if secret is not None else ""

    user = (settings.scnet_user or "").strip()
    access_key, secret_key = value(settings.scnet_access_key), value(settings.scnet_secret_key)
    password, org_id = value(settings.scnet_password), value(settings.scnet_org_id)
    if access_key or secret_key:
        needed = (("SCNET_USER", user), ("SCNET_ACCESS_KEY", access_key), ("SCNET_SECRET_KEY", secret_key))
        method, fields = "AK/SK sign-in", "SCNET_USER, SCNET_ACCESS_KEY and SCNET_SECRET_KEY"
    elif password or org_id:
        needed = (("SCNET_USER", user), ("SCNET_PASSWORD", password), ("SCNET_ORG_ID", org_id))
        method, fields = "password sign-in", "SCNET_USER, SCNET_PASSWORD and SCNET_ORG_ID"
    else:
        return None
    missing = [name for name, given in needed if not given]
    if missing:
        raise ConfigError(f"{missing[0]} is not set: {method} needs {fields}")
    # These travel as HTTP header values, which are ASCII: say which setting, never echo the value.
    for name, given in needed:
        if name != "SCNET_SECRET_KEY" and not given.isascii():
            raise ConfigError(f"{name} holds non-ASCII characters, which cannot be sent to SCNet as a header value")
    if access_key:
        return AccessKeyCredentials(user=user, access_key=access_key, secret_key=secret_key)
    return PasswordCredentials(user=user, password=password, org_id=org_id)


def _check_roots(roots: Iterable[str], protected: frozenset[str]) -> PathPolicy:
    """Every root checked now (a `~` root against a stand-in home); the policy of the absolute ones."""
    roots = tuple(roots)
    try:
        PathPolicy([expand_home(root, _OFFLINE_HOME) for root in roots], protected)
        return PathPolicy([root for root in roots if not is_home_relative(root)], protected)
    except ValueError as exc:
        why = str(exc).replace(_OFFLINE_HOME, "~")
        raise ConfigError(f"invalid setting EFILE_ALLOWED_ROOTS (or --allowed-root): {why}") from None


def _request_state_security(settings: Settings) -> RequestStateSecurity | None:
    """Replicas that share EFILE_CONFIRM_SECRET also accept each other's elicitation round trips (2026-07-28).

    The key is derived, not the secret itself: the confirmation tokens and the SDK's sealed request
    state never share a key.
    """
    if settings.confirm_secret is None:
        return None  # the SDK's per-process key: right for stdio and a single HTTP worker
    secret = settings.confirm_secret.get_secret_value().encode()
    key = hmac.new(secret, b"efile-mcp request state v1", hashlib.sha256).digest()
    return RequestStateSecurity(keys=[key], audience="efile-mcp")


#: The review pages of each server built here, for the HTTP app to mount (`review_site_of`).
_REVIEW_SITES: weakref.WeakKeyDictionary[MCPServer[Any], ReviewSite] = weakref.WeakKeyDictionary()


def review_site_of(server: MCPServer[Any]) -> ReviewSite | None:
    """The review pages of a server `build_server` made: served at /review/ of its HTTP app."""
    return _REVIEW_SITES.get(server)


def _review_site(settings: Settings, store: StateStore, clock: Callable[[], float]) -> ReviewSite:
    """The person's review pages: in stdio mode a loopback listener of their own (started on first need); over
    HTTP, routes of the same app, at the address the person's browser reaches it."""
    public = None
    allowed: tuple[str, ...] = ()
    if settings.transport == "http":
        host, port = settings.http_host, settings.http_port
        if host in ("127.0.0.1", "localhost", "::1"):
            public = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        elif settings.http_allowed_hosts:
            # Beyond loopback the README asks for TLS in front, under the names clients use.
            public = f"https://{settings.http_allowed_hosts[0]}"
            allowed = settings.http_allowed_hosts
    return ReviewSite(store, clock=clock, browser=settings.review_browser, public_base=public, allowed_hosts=allowed)


def build_server(
    settings: Settings, *, clock: Callable[[], float] = time.time, confirm_scope: str | None = None
) -> MCPServer[ToolState]:
    """Check everything that can be checked without the network, then return a ready server.

    `confirm_scope` replaces what confirmation tokens are bound to (the efile URL): the sandbox binds them to
    its directory, whose URL changes with every process.

    Raises ConfigError (one line, naming the setting) for anything the person must fix.
    """
    credentials = _credentials(settings)
    static = settings.token.get_secret_value().strip() if settings.token is not None else ""
    if credentials is not None and static:
        raise ConfigError(
            "EFILE_TOKEN and SCNet sign-in (SCNET_*) are both set: keep one; sign-in renews its token by itself"
        )
    if credentials is None and not static:
        if settings.scnet_user:
            raise ConfigError(
                "SCNET_USER is set but nothing to sign in with: add SCNET_ACCESS_KEY and SCNET_SECRET_KEY "
                "(or SCNET_PASSWORD and SCNET_ORG_ID)"
            )
        if not settings.base_url:
            raise ConfigError(
                "EFILE_BASE_URL (or --base-url) is not set, and there are no credentials to find it with: sign in "
                "with SCNET_USER, SCNET_ACCESS_KEY and SCNET_SECRET_KEY (the region is then discovered), or give "
                "EFILE_TOKEN and EFILE_BASE_URL; or try efile-mcp on a local sandbox with `efile-mcp --sandbox`"
            )
        raise ConfigError(
            "EFILE_TOKEN is not set: put your SCNet efile API token in the environment variable EFILE_TOKEN, "
            "or sign in with SCNET_USER, SCNET_ACCESS_KEY and SCNET_SECRET_KEY"
        )
    protected = DEFAULT_PROTECTED | frozenset(settings.protected)
    _check_roots(settings.allowed_roots, protected)
    home_roots = any(is_home_relative(root) for root in settings.allowed_roots)
    needs_center = not settings.base_url or home_roots
    audit = AuditLog(settings.audit_log or default_audit_path())
    secret = settings.confirm_secret.get_secret_value().encode() if settings.confirm_secret else secrets.token_bytes(32)
    # A confirmation never crosses regions: bound to the efile URL, or to the account and region asked for.
    scope = confirm_scope or (
        normalise_base_url(settings.base_url)
        if settings.base_url
        else f"scnet:{settings.scnet_ac_url}|{settings.scnet_user or ''}|{settings.scnet_region or ''}"
    )
    signer = ConfirmationSigner(secret=secret, ttl=settings.confirm_ttl, scope=scope, clock=clock)

    store = open_store(settings.state_url, settings.state_dir, clock=clock)
    review = _review_site(settings, store, clock)

    @asynccontextmanager
    async def lifespan(server: MCPServer[ToolState]) -> AsyncIterator[ToolState]:
        retry = RetryPolicy(attempts=settings.retry_attempts, budget=settings.retry_budget)
        ac = None
        if credentials is not None or needs_center:
            ac = AcClient(
                ac_url=settings.scnet_ac_url,
                api_url=settings.scnet_api_url,
                timeout=settings.request_timeout,
                retry=retry,
            )
        tokens: TokenSource = StaticToken(static)
        signed_in: SignedInToken | None = None
        if credentials is not None:
            assert ac is not None
            tokens = signed_in = SignedInToken(ac, credentials, settings.scnet_region)
        locator = None
        base_url: str | Callable[[], Awaitable[str]] | None = settings.base_url
        if needs_center:
            assert ac is not None
            locator = RegionLocator(ac, tokens, efile_url=settings.base_url)
            base_url = settings.base_url or locator.efile_base_url
        assert base_url is not None
        transport = EfileTransport(
            base_url,
            tokens,
            timeout=settings.request_timeout,
            retry=retry,
            concurrency=settings.concurrency,
        )

        def region() -> str | None:
            if signed_in is not None and signed_in.region is not None:
                return signed_in.region.cluster_name or signed_in.region.cluster_id
            return settings.scnet_region

        guard = Guard(
            transport=transport,
            signer=signer,
            store=store,
            audit=audit,
            roots=settings.allowed_roots,
            protected=protected,
            max_paths=settings.max_paths,
            max_plan_paths=settings.max_plan_paths,
            read_only=settings.read_only,
            confirm_mode=settings.confirm,
            walk_max_entries=settings.walk_max_entries,
            walk_max_seconds=settings.walk_max_seconds,
            concurrency=settings.concurrency,
            home=locator.home if locator is not None else None,
            region=region,
            clock=clock,
            show_protected=settings.show_protected,
            quota=QuotaReader.for_settings(settings, ac=ac, tokens=tokens, locator=locator, transport=transport),
            confirm_timeout=settings.confirm_timeout,
            remove_mode=settings.remove_mode,
            execution_lease=settings.execution_lease,
            links_inside=settings.links_inside,
            pages=review,
            quarantine_days=settings.quarantine_days,
        )
        purge_preview = None
        if credentials is None:
            # A token (or the sandbox) needs no sign-in: the roots are looked up now, so a wrong one is a
            # WARNING at start rather than a refusal at the first dry run. Bounded: start-up stays quick.
            reached = False
            with anyio.move_on_after(ROOTS_CHECK_SECONDS):
                try:
                    await guard.roots_problems()
                    reached = True
                except EfileMcpError as exc:
                    log.info("the allowed roots could not be checked at start-up: %s", exc)
            if reached:
                with anyio.move_on_after(ROOTS_CHECK_SECONDS):
                    # The purge's dry run now (logged); only expired plans, if any, are purged in the background.
                    purge_preview = await purge_dry_run_at_start(guard.quarantine)
        try:
            async with anyio.create_task_group() as background:
                # Intents a crash left without an outcome get one from the storage's state: off the first call's way.
                states = Listings(EfileApi(transport), concurrency=settings.concurrency, keep=False)
                background.start_soon(reconcile_at_start, audit, states)
                # Plans older than EFILE_QUARANTINE_DAYS: a dry run logged, then purged (not when read-only).
                # Never with sign-in: a sign-in at every start (each Claude Desktop window starts one) with a
                # wrong key is a failed sign-in per start, which can lock the account. `efile-mcp purge` (cron) does.
                if credentials is None:
                    background.start_soon(
                        partial(purge_at_start, guard.quarantine, read_only=settings.read_only, dry=purge_preview)
                    )
                else:
                    log.info("quarantine: expired plans are purged by `efile-mcp purge` (no sign-in at start-up)")
                try:
                    yield ToolState(settings=settings, guard=guard)
                finally:
                    background.cancel_scope.cancel()
        finally:
            await review.aclose()
            await transport.aclose()
            if ac is not None:
                await ac.aclose()

    server: MCPServer[ToolState] = MCPServer(
        "efile-mcp",
        title="SCNet efile (guarded removal)",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        request_state_security=_request_state_security(settings),
        tools=tools_for(settings),
    )
    _REVIEW_SITES[server] = review
    return server
