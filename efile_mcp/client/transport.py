"""The one request pipeline of efile-mcp, and the efile API transport built on it.

`RequestPipeline.send` is every HTTP call efile-mcp makes (efile API, SCNet sign-in and center, HPC
quota): the token header and its renewal on refusal, the per-answer deadline, the envelope, status
handling, one retry policy (classified by `errors.is_retryable`, full jitter, Retry-After, a time
budget, a short connect budget on first contact) and the scrubbing of secrets from what the server
says. What differs between services (where, which setting, which headers, which token) is a
parameter, not a copy.

Everything above this module sees either the envelope's `data` or an exception from `efile_mcp.errors`.
"""

from __future__ import annotations

import errno
import gc
import json as jsonlib
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio
import httpx2 as httpx
import pydantic_core
from pydantic import ValidationError

from ..errors import (
    AUTH_CODES,
    MISSING_TOKEN,
    ApiError,
    AuthError,
    ConnectionFailedError,
    EfileMcpError,
    HttpStatusError,
    MalformedResponseError,
    RetryBudgetExhausted,
    SignInError,
    UnreachableError,
    is_retryable,
)
from ..models.wire import API_PREFIX, Envelope

log = logging.getLogger("efile_mcp.client")


class TokenSource(Protocol):
    """Where the API token comes from: EFILE_TOKEN (`StaticToken`) or sign-in (`client.tokens.SignedInToken`).

    The pipeline asks for the token on every request, so a source that renews ahead of expiry keeps a
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


@runtime_checkable
class SecretKeeper(Protocol):
    """A token source that also holds credentials (AK, SK, password): none may come back in a message."""

    def secrets(self) -> tuple[str, ...]: ...


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
    #: Seconds of retries for a service never reached yet whose connection fails (refused, no DNS,
    #: connect timeout): a wrong URL or a down network, not overload, so it is said quickly.
    connect_budget: float = 3.0


def normalise_base_url(url: str, suffix: str = "/efile") -> str:
    """The base URL with or without a trailing `suffix` (`/efile`, `/hpc`): the prefix is appended exactly once."""
    url = url.strip().rstrip("/")
    if suffix and url.endswith(suffix):
        url = url[: -len(suffix)]
    return url


@dataclass(frozen=True)
class Service:
    """Who is called, as messages name it: the service, the setting that says where it is, the fix."""

    name: str
    #: The setting (or origin) of the base URL, shown next to it: "EFILE_BASE_URL".
    setting: str
    #: The last sentence of an "unreachable" message: what to check.
    fix: str
    #: Stripped from request paths to name the endpoint in messages ("/efile/openapi/v2").
    prefix: str = ""
    #: Appended to the base URL when it is shown ("/efile"), so the person sees the URL they set.
    shown_suffix: str = ""


EFILE_FIX = "Check EFILE_BASE_URL (or the region the SCNet center reports) and the network."
#: The efile API at a configured EFILE_BASE_URL.
EFILE_SERVICE = Service("efile API", "EFILE_BASE_URL", EFILE_FIX, API_PREFIX, "/efile")
#: The efile API at the URL the SCNet center reported.
EFILE_DISCOVERED = Service("efile API", "the efile URL the SCNet center reports", EFILE_FIX, API_PREFIX, "/efile")

#: Secrets shorter than this are not searched for: replacing two letters everywhere would garble every message.
SECRET_MIN_LENGTH = 4
REDACTED = "<redacted>"


def _forms(secret: str) -> set[bytes]:
    """How a secret can appear in a JSON body: as is, JSON-escaped, with `/` escaped."""
    escaped = jsonlib.dumps(secret)[1:-1]
    forms = {secret, escaped, jsonlib.dumps(secret, ensure_ascii=False)[1:-1], escaped.replace("/", "\\/")}
    return {form.encode("utf-8") for form in forms}


class Secrets:
    """Strings that must never come back to the agent, a log line or a result: tokens, AK, SK, password."""

    def __init__(self, values: Iterable[str | None]) -> None:
        unique = {value for value in values if value and len(value) >= SECRET_MIN_LENGTH}
        # Longest first: a secret containing another is replaced whole.
        self.values: tuple[str, ...] = tuple(sorted(unique, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self.values)

    def scrub(self, text: str) -> str:
        for secret in self.values:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def scrub_data(self, value: Any) -> Any:
        """Every string of a JSON value (keys too), scrubbed."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, list):
            return [self.scrub_data(item) for item in value]
        if isinstance(value, dict):
            return {self.scrub(str(key)): self.scrub_data(item) for key, item in value.items()}
        return value

    def found_in(self, body: bytes) -> bool:
        """Whether a raw body may hold a secret (one fast scan per form: most answers hold none)."""
        return any(form in body for secret in self.values for form in _forms(secret))


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


def _connect_failure(exc: httpx.TransportError, connect_timeout: float) -> str:
    """Why a connection could not be made, in words: refused, no such host, timeout, unreachable."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {connect_timeout:g} s (connect timeout)"
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve (DNS lookup failed)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "network or host unreachable"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "the host name does not resolve (DNS lookup failed)"
    return f"connection failed ({type(exc).__name__})"


def full_jitter(cap: float) -> float:
    """Full jitter (AWS architecture blog): spreads retries of concurrent batches apart."""
    return random.uniform(0, cap)


class LazyHttpClient:
    """An httpx client built on first use, not at start-up: its TLS context costs ~36 ms that the
    MCP handshake (Claude Desktop starts the server on every launch) should not wait for."""

    def __init__(
        self, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None, limits: httpx.Limits | None = None
    ) -> None:
        self.connect_timeout = min(timeout, 10.0)
        self._options: dict[str, Any] = {
            "timeout": httpx.Timeout(timeout, connect=self.connect_timeout),
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


def decode_envelope(content: bytes) -> Envelope | None:
    """An answer's envelope, its JSON parsed straight into Python objects; None when it is not one (the caller
    then validates the text against `Envelope`, which says why).

    The fast path for large answers (a file/list page of 25,000 entries is ~10 MB): validating the text
    against `Envelope` builds its `data: Any` at ~2.1 µs an entry, more than json.loads (~1.6 µs); parsing
    first and validating the parsed envelope (`data` passed through untouched) takes ~0.95 µs. Same result
    for every JSON text; object keys are cached (a page repeats the same dozen keys).
    """
    # Without the collector's passes while the answer is built: every object of it counts towards the next
    # pass, which in a server traverses the whole heap (and the answer with it) for nothing to free.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return Envelope.model_validate(pydantic_core.from_json(content, cache_strings="keys"))
    except ValueError:  # not JSON, or not an envelope (ValidationError is a ValueError)
        return None
    finally:
        if collecting:
            gc.enable()


@dataclass
class _Sent:
    """The token a request went out with, so that a refusal renews exactly that token."""

    token: str | None = None


class RequestPipeline:
    """Sends requests and returns the envelope's `data`, or raises an `efile_mcp.errors` exception.

    `clock`, `sleep` and `jitter` are injectable: tests move time instead of waiting for it.
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        concurrency: int | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float], float] = full_jitter,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._limiter = anyio.CapacityLimiter(concurrency) if concurrency else None
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._http = LazyHttpClient(timeout=timeout, transport=http_transport, limits=limits)
        #: Base URLs that have answered at least once: a connection failure there is no longer "unreachable".
        self._reached: set[str] = set()

    @property
    def concurrency(self) -> int | None:
        return int(self._limiter.total_tokens) if self._limiter else None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        base_url: str,
        path: str,
        *,
        service: Service,
        tokens: TokenSource | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        secrets: Iterable[str] = (),
        on_retry: Callable[[BaseException], None] | None = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        retry_if: Callable[[BaseException], bool] = is_retryable,
    ) -> Any:
        """One call, retried by the policy; with `tokens`, its token goes in the `token` header and a
        refusal (10008, 911406) renews it once, if the source can, and sends the request once more
        (a refused request did nothing, so sending it again is safe); a second refusal is raised.

        `secrets` (with the token sent and the token source's credentials) are replaced by
        `<redacted>` in everything the server says. `on_retry` sees each failure about to be retried:
        the removal uses it to know that an attempt may have acted although its answer was lost.
        `data` is a form body, `files` a multipart one. `retry_if` narrows what is retried: a call that
        is not idempotent (a move) retries only what was turned away, never an answer lost after sending.
        """
        call = _Call(self, method, base_url, path, service, tokens, headers, json, params, tuple(secrets), on_retry)
        call.data, call.files, call.retry_if = data, files, retry_if
        if tokens is None:
            return await call.with_retries()
        try:
            return await call.with_retries()
        except AuthError as refused:
            # Only the API's refusal of a token it was sent; a failed sign-in is not retried here.
            if (
                refused.code not in AUTH_CODES
                or not isinstance(tokens, RenewableTokenSource)
                or call.sent.token is None
            ):
                raise
            log.info("%s refused the token (%s); renewing it and retrying once", service.name, refused.code)
            if not await tokens.refresh(call.sent.token):
                raise
        try:
            return await call.with_retries()
        except AuthError as again:
            if again.code not in AUTH_CODES:
                raise
            raise AuthError(again.code, again.server_msg, endpoint=again.endpoint, fix=tokens.auth_fix) from None


class _Call:
    """One `send`: its attempts share the request, the budget's start and the token sent."""

    def __init__(
        self,
        pipeline: RequestPipeline,
        method: str,
        base_url: str,
        path: str,
        service: Service,
        tokens: TokenSource | None,
        headers: dict[str, str] | None,
        json: Any,
        params: dict[str, Any] | None,
        secrets: tuple[str, ...],
        on_retry: Callable[[BaseException], None] | None,
    ) -> None:
        self.p = pipeline
        self.method, self.base_url, self.path, self.service = method, base_url, path, service
        self.endpoint = path.removeprefix(service.prefix) or path
        self.tokens, self.headers, self.json, self.params = tokens, headers, json, params
        self.on_retry = on_retry
        self.data: dict[str, Any] | None = None
        self.files: dict[str, Any] | None = None
        self.retry_if: Callable[[BaseException], bool] = is_retryable
        kept = tokens.secrets() if isinstance(tokens, SecretKeeper) else ()
        self.secrets = (*secrets, *kept)
        self.sent = _Sent()

    async def with_retries(self) -> Any:
        policy = self.p.retry
        started = self.p._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                if self.p._limiter is None:
                    return await self.once()
                async with self.p._limiter:
                    return await self.once()
            except EfileMcpError as exc:
                if not self.retry_if(exc):
                    raise
                delay = self.p._jitter(min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))
                if isinstance(exc, HttpStatusError) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                unreachable = isinstance(exc, UnreachableError)
                budget = min(policy.budget, policy.connect_budget) if unreachable else policy.budget
                elapsed = self.p._clock() - started
                if attempt >= policy.attempts or elapsed + delay >= budget:
                    if unreachable:
                        raise  # says where, which setting and what to check: not "overloaded"
                    raise RetryBudgetExhausted(self.endpoint, attempt, exc, service=self.service.name) from exc
                log.info("%s; retrying %s in %.2fs (attempt %d)", exc, self.endpoint, delay, attempt + 1)
                if self.on_retry is not None:
                    self.on_retry(exc)
                await self.p._sleep(delay)

    async def once(self) -> Any:
        headers = dict(self.headers or {})
        if self.tokens is not None:
            token = await self.tokens.token()
            if not token:
                raise AuthError(MISSING_TOKEN, None, endpoint=self.endpoint)
            self.sent.token = token
            headers["token"] = token
        hidden = Secrets((*self.secrets, self.sent.token, *self.headers_secret_values()))
        try:
            response = await self.p._http.request(
                self.method,
                self.base_url + self.path,
                json=self.json,
                params=self.params,
                headers=headers,
                data=self.data,
                files=self.files,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            why = _connect_failure(exc, self.p._http.connect_timeout)
            if self.base_url not in self.p._reached:
                raise UnreachableError(
                    self.service.name,
                    self.base_url + self.service.shown_suffix,
                    self.service.setting,
                    why,
                    self.service.fix,
                    endpoint=self.endpoint,
                ) from None
            raise ConnectionFailedError(self.endpoint, why, request_sent=False, service=self.service.name) from None
        except httpx.TransportError as exc:
            raise ConnectionFailedError(self.endpoint, type(exc).__name__, service=self.service.name) from None
        except UnicodeEncodeError:
            # A header value that is not ASCII; the exception's text would quote the credential itself.
            raise SignInError(
                f"a setting sent to the {self.service.name} as a header (a user name, key or token) holds "
                "characters that cannot be sent in an HTTP header (non-ASCII): correct it and restart efile-mcp"
            ) from None
        self.p._reached.add(self.base_url)
        if response.status_code != 200:
            raise HttpStatusError(
                response.status_code, self.endpoint, _retry_after_seconds(response), service=self.service.name
            )
        envelope = decode_envelope(response.content)
        if envelope is None:
            try:
                envelope = Envelope.model_validate_json(response.content)
            except ValidationError as exc:
                why = hidden.scrub(str(exc.errors()[0]["msg"]))
                raise MalformedResponseError(self.endpoint, why, service=self.service.name) from None
        log.debug("%s %s %s -> code %s", self.service.name, self.method, self.endpoint, envelope.code)
        if not envelope.ok:
            msg = hidden.scrub(envelope.msg) if envelope.msg else envelope.msg
            raise ApiError.from_envelope(envelope.code, msg, endpoint=self.endpoint)
        if hidden and hidden.found_in(response.content):
            return hidden.scrub_data(envelope.data)
        return envelope.data

    def headers_secret_values(self) -> tuple[str, ...]:
        """The values of the credential headers sent (token, access key, password, orgId, signature)."""
        sensitive = {"token", "accesskey", "password", "orgid", "signature"}
        return tuple(value for name, value in (self.headers or {}).items() if name.lower() in sensitive)


class EfileTransport:
    """Requests to one region's efile API, through the request pipeline.

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
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float], float] = full_jitter,
    ) -> None:
        self._base_url = normalise_base_url(base_url) if isinstance(base_url, str) else None
        self._find_base_url = None if isinstance(base_url, str) else base_url
        self._service = EFILE_SERVICE if isinstance(base_url, str) else EFILE_DISCOVERED
        self.tokens = tokens
        self._concurrency = concurrency
        self.pipeline = RequestPipeline(
            timeout=timeout,
            retry=retry,
            concurrency=concurrency,
            http_transport=http_transport,
            limits=httpx.Limits(max_connections=max(concurrency, 1) * 2, max_keepalive_connections=concurrency),
            sleep=sleep,
            clock=clock,
            jitter=jitter,
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
        return self._concurrency

    async def aclose(self) -> None:
        await self.pipeline.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        retry_if: Callable[[BaseException], bool] = is_retryable,
    ) -> Any:
        """The envelope's `data` of one efile API call (`path` starts with `/efile/openapi/v2`); `data`, `files`
        and `retry_if` as in `RequestPipeline.send`."""
        base_url = await self._resolve_base_url()
        return await self.pipeline.send(
            method,
            base_url,
            path,
            service=self._service,
            tokens=self.tokens,
            json=json,
            params=params,
            on_retry=on_retry,
            data=data,
            files=files,
            retry_if=retry_if,
        )
