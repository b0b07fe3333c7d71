"""One request to the efile API: auth header, envelope check, bounded retries, bounded concurrency.

Everything above this module sees either the envelope's `data` or an exception from `efile_mcp.errors`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio
import httpx2 as httpx
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    before_sleep_nothing,
    retry_if_exception,
    stop_after_attempt,
)
from tenacity.stop import stop_base

from ..errors import (
    AUTH_CODES,
    MISSING_TOKEN,
    ApiError,
    AuthError,
    ConnectionFailedError,
    HttpStatusError,
    MalformedResponseError,
    RetryBudgetExhausted,
    is_retryable,
)
from ..models.wire import API_PREFIX, Envelope

log = logging.getLogger("efile_mcp.client")


class TokenSource(Protocol):
    """Where the API token comes from: EFILE_TOKEN (`StaticToken`) or sign-in (`client.auth.SignedInToken`).

    The transport asks for the token on every request, so a source that renews ahead of expiry keeps a
    long wait or a large removal going across the token's lifetime.
    """

    async def token(self) -> str | None: ...


@runtime_checkable
class RenewableTokenSource(TokenSource, Protocol):
    """A source that can replace a token the API refused (10008, 911406), e.g. by signing in again."""

    #: What the person should do when even a fresh token is refused (ends the AuthError message).
    auth_fix: str

    async def refresh(self, rejected: str) -> str | None:
        """A token other than `rejected`; callers that saw the same rejected token share one renewal."""
        ...


@dataclass(frozen=True)
class StaticToken:
    value: str | None

    async def token(self) -> str | None:
        return self.value

    def __repr__(self) -> str:  # the token never reaches a log line, even through repr()
        return "StaticToken(<hidden>)"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    budget: float = 30.0  # seconds, across all attempts of one request
    base_delay: float = 0.25
    max_delay: float = 8.0


def normalise_base_url(url: str) -> str:
    """The base URL with or without a trailing `/efile`: the API prefix is appended exactly once."""
    url = url.strip().rstrip("/")
    if url.endswith("/efile"):
        url = url[: -len("/efile")]
    return url


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _report_retry(on_retry: Callable[[BaseException], None]) -> Callable[[RetryCallState], None]:
    def report(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            on_retry(exc)

    return report


class _StopWhenNextWaitExceedsBudget(stop_base):
    """Stop once the time spent plus the coming wait would overrun the budget: a failing server ends in a clear error, not a hang."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        elapsed = retry_state.seconds_since_start or 0.0
        upcoming = retry_state.upcoming_sleep or 0.0
        return elapsed + upcoming >= self.budget


@dataclass
class _Sent:
    """The token a request went out with, so that a refusal renews exactly that token."""

    token: str | None = None


class LazyHttpClient:
    """An httpx client built on first use, not at start-up: its TLS context costs ~36 ms that the
    MCP handshake (Claude Desktop starts the server on every launch) should not wait for."""

    def __init__(
        self, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None, limits: httpx.Limits | None = None
    ) -> None:
        self._options: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            "transport": transport,
            "follow_redirects": False,
            "trust_env": False,
        }
        if limits is not None:
            self._options["limits"] = limits
        self._deadline = timeout
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(**self._options)
        return self._client

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with a deadline for the whole answer.

        httpx's timeouts bound each read, not the response: a gateway that trickles a byte at a
        time would hold a call, and its retry budget, for ever.
        """
        try:
            with anyio.fail_after(self._deadline):
                return await self.client.request(method, url, **kwargs)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no complete answer within {self._deadline:g} s") from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class EfileTransport:
    """Requests to one region's efile API.

    `base_url` is the URL, or an async function that finds it (region discovery) at the first request:
    the server starts without the network, and a discovery failure is one call's error, not a crash.
    """

    def __init__(
        self,
        base_url: str | Callable[[], Awaitable[str]],
        tokens: TokenSource,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        http_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._base_url = normalise_base_url(base_url) if isinstance(base_url, str) else None
        self._find_base_url = None if isinstance(base_url, str) else base_url
        self._tokens = tokens
        self._retry = retry or RetryPolicy()
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._sleep = sleep
        self._http = LazyHttpClient(
            timeout=timeout,
            transport=http_transport,
            limits=httpx.Limits(max_connections=max(concurrency, 1) * 2, max_keepalive_connections=concurrency),
        )

    @property
    def base_url(self) -> str | None:
        """The region's base URL; None until discovery has found it."""
        return self._base_url

    async def _resolve_base_url(self) -> str:
        if self._base_url is None:
            assert self._find_base_url is not None
            self._base_url = normalise_base_url(await self._find_base_url())
        return self._base_url

    @property
    def concurrency(self) -> int:
        return int(self._limiter.total_tokens)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> Any:
        """`_call`, plus one renewal: a token the API refuses (10008, 911406) is renewed once, if the token
        source can, and the request sent once more; a second refusal is raised. A refused request did
        nothing, so sending it again is safe.
        """
        sent = _Sent()
        try:
            return await self._call(method, path, json=json, params=params, on_retry=on_retry, sent=sent)
        except AuthError as refused:
            tokens = self._tokens
            # Only the API's refusal of a token it was sent; a failed sign-in is not retried here.
            if refused.code not in AUTH_CODES or not isinstance(tokens, RenewableTokenSource) or sent.token is None:
                raise
            log.info("efile API refused the token (%s); renewing it and retrying once", refused.code)
            if not await tokens.refresh(sent.token):
                raise
        try:
            return await self._call(method, path, json=json, params=params, on_retry=on_retry, sent=sent)
        except AuthError as again:
            if again.code not in AUTH_CODES:
                raise
            raise AuthError(again.code, again.server_msg, endpoint=again.endpoint, fix=tokens.auth_fix) from None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: dict[str, Any] | None,
        on_retry: Callable[[BaseException], None] | None,
        sent: _Sent,
    ) -> Any:
        """Send one request (retrying what may be retried) and return the envelope's `data`.

        `on_retry` sees each failure that is about to be retried: the removal uses it to know that
        an attempt may have acted although its answer was lost.
        """
        endpoint = path.removeprefix(API_PREFIX)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry.attempts) | _StopWhenNextWaitExceedsBudget(self._retry.budget),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            sleep=self._sleep,
            reraise=False,
            before_sleep=_report_retry(on_retry) if on_retry else before_sleep_nothing,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with self._limiter:
                        return await self._once(method, path, endpoint, json=json, params=params, sent=sent)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            assert isinstance(last, Exception)
            raise RetryBudgetExhausted(endpoint, exc.last_attempt.attempt_number, last) from last
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        n = retry_state.attempt_number
        # Full jitter (AWS architecture blog): spreads retries of concurrent batches apart.
        delay = random.uniform(0, min(self._retry.max_delay, self._retry.base_delay * 2 ** (n - 1)))
        if isinstance(exc, HttpStatusError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        log.info("efile API: %s; retrying in %.2fs (attempt %d)", exc, delay, n + 1)
        return delay

    async def _once(
        self, method: str, path: str, endpoint: str, *, json: Any, params: dict[str, Any] | None, sent: _Sent
    ) -> Any:
        base_url = await self._resolve_base_url()
        token = await self._tokens.token()
        if not token:
            raise AuthError(MISSING_TOKEN, None, endpoint=endpoint)
        sent.token = token
        try:
            response = await self._http.request(
                method, base_url + path, json=json, params=params, headers={"token": token}
            )
        except httpx.TransportError as exc:
            raise ConnectionFailedError(endpoint, type(exc).__name__) from None
        if response.status_code != 200:
            raise HttpStatusError(response.status_code, endpoint, _retry_after_seconds(response))
        try:
            envelope = Envelope.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise MalformedResponseError(endpoint, first["msg"]) from None
        log.debug("efile API %s %s -> code %s", method, endpoint, envelope.code)
        if not envelope.ok:
            raise ApiError.from_envelope(envelope.code, envelope.msg, endpoint=endpoint)
        return envelope.data
