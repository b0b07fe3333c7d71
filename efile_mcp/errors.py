"""The one exception tree of efile-mcp: every exception it raises on purpose is drawn here.

    EfileMcpError
    ├── ConfigError                   bad or missing setting; start-up fails with one line
    ├── StateStoreError               the state store (SQLite file, Redis) failed at run time
    │   └── PlanRowsChanged           a unit of a plan's stored rows is not what its token binds (never sent)
    ├── AuditUnavailable              an audit record could not be written and fsynced (fails closed)
    ├── GuardRefusal                  the guard refuses the whole call before anything is sent
    ├── ConfirmationRefused           a confirmation token (or the person's answer) does not hold
    ├── ApiError                      the efile API answered an envelope with code != "0"
    │   ├── AuthError                 no token, 911406, 10008: the whole call stops, the fix is named
    │   │   └── SignInError           SCNet sign-in, token renewal or region discovery failed
    │   ├── NotFoundError             911020: file or directory does not exist
    │   ├── RetryableApiError         911048, 911404, 911504: retried with backoff, then raised
    │   └── (others)                  any other code, carried with its meaning and the server's msg
    └── TransportError                no usable answer at all
        ├── HttpStatusError           a non-200 status from a gateway (429 and 5xx are retried first)
        ├── MalformedResponseError    not JSON, or not an envelope
        ├── ConnectionFailedError     connect/read failures and timeouts (retried first)
        │   └── UnreachableError      a service never reached refuses, does not resolve or times out
        └── RetryBudgetExhausted      retries ran out (count or time); carries the last error

Messages are written for the agent that reads the tool error: what happened and what to do next.
No message ever contains the API token, the access key or the secret key: the request pipeline
replaces them with `<redacted>` in whatever the server says before it reaches an exception.
"""

from __future__ import annotations

from .models.wire import code_meaning

AUTH_CODES = frozenset({"10008", "911406"})
NOT_FOUND_CODE = "911020"
RETRYABLE_CODES = frozenset({"911048", "911404", "911504"})


class EfileMcpError(Exception):
    """Base of every error efile-mcp raises on purpose."""


class ConfigError(EfileMcpError):
    """A setting is missing or malformed. The message is one line naming the setting and the fix."""


class StateStoreError(EfileMcpError):
    """The state store (spent tokens, plans) failed at run time: Redis unreachable, the SQLite file locked or full.

    The message says where the store is and what to check. A redemption that raised it decided
    nothing: the caller must not execute on it (the token may or may not have been spent).
    """


class AuditUnavailable(EfileMcpError):
    """An audit record could not be written and fsynced (disk or quota full, the file replaced by a link).

    Fails closed: raised before a removal is sent, it means nothing was sent. The message names the
    file, the operating system's reason and the fix (free space, or EFILE_AUDIT_LOG elsewhere).
    """


class GuardRefusal(EfileMcpError):
    """The whole call is refused before anything is sent. `code` is stable; the message tells the agent what to do."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class ConfirmationRefused(EfileMcpError):
    """The confirmation does not hold. `code` is stable for tests and the audit log; the message tells the agent what to do."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class ApiError(EfileMcpError):
    """The API answered with a non-success code."""

    def __init__(self, code: str, msg: str | None, *, endpoint: str = "") -> None:
        self.code = code
        self.meaning = code_meaning(code)
        self.server_msg = msg or ""
        self.endpoint = endpoint
        detail = f": {self.server_msg}" if self.server_msg and self.server_msg != self.meaning else ""
        where = f" from {endpoint}" if endpoint else ""
        super().__init__(f"efile API error {code} ({self.meaning}){where}{detail}")

    @staticmethod
    def from_envelope(code: str, msg: str | None, *, endpoint: str = "") -> ApiError:
        if code in AUTH_CODES:
            return AuthError(code, msg, endpoint=endpoint)
        if code == NOT_FOUND_CODE:
            return NotFoundError(code, msg, endpoint=endpoint)
        if code in RETRYABLE_CODES:
            return RetryableApiError(code, msg, endpoint=endpoint)
        return ApiError(code, msg, endpoint=endpoint)


MISSING_TOKEN = "no-token"


STATIC_TOKEN_FIX = (
    "The efile token is missing, expired or not valid for this region: "
    "set a fresh token in EFILE_TOKEN (and the region's EFILE_BASE_URL), then restart efile-mcp."
)


class AuthError(ApiError):
    """The API does not accept the token. Nothing per path can be said; the person must fix the credentials.

    `fix` is what the person should do; it depends on where the token came from (EFILE_TOKEN or sign-in).
    """

    def __init__(self, code: str, msg: str | None, *, endpoint: str = "", fix: str | None = None) -> None:
        super().__init__(code, msg, endpoint=endpoint)
        what = "no efile token is configured" if code == MISSING_TOKEN else self.args[0]
        self.args = (f"{what}. {fix or STATIC_TOKEN_FIX}",)


SIGN_IN_FAILED = "sign-in"


class SignInError(AuthError):
    """Signing in to SCNet, renewing the token or finding the region failed. The message names the setting to fix.

    An AuthError because it means the same to a call: no usable token, so the call stops (a removal
    starts no new batch) rather than failing path by path. Raised at the first tool call that needs the
    network, never at start-up: the agent gets a tool error and the server keeps running.
    """

    def __init__(self, message: str) -> None:
        EfileMcpError.__init__(self, message)  # the message is complete: no efile code to explain
        self.code = SIGN_IN_FAILED
        self.meaning = "SCNet sign-in or region discovery failed"
        self.server_msg = ""
        self.endpoint = ""


class NotFoundError(ApiError):
    """911020: the file or directory does not exist."""


class RetryableApiError(ApiError):
    """A code the API documents as transient (rate limit, AC unreachable, command timeout)."""


class TransportError(EfileMcpError):
    """No usable answer from the API."""


class HttpStatusError(TransportError):
    def __init__(
        self, status: int, endpoint: str, retry_after: float | None = None, *, service: str = "efile API"
    ) -> None:
        self.status = status
        self.endpoint = endpoint
        self.retry_after = retry_after
        super().__init__(f"{service} answered HTTP {status} from {endpoint}")


class MalformedResponseError(TransportError):
    def __init__(self, endpoint: str, why: str, *, service: str = "efile API") -> None:
        self.endpoint = endpoint
        super().__init__(f"{service} sent an answer efile-mcp cannot read from {endpoint}: {why}")


class ConnectionFailedError(TransportError):
    """No answer: the connection failed, broke, or the answer did not come in time.

    `request_sent` is False when the connection was never made (refused, DNS, connect timeout):
    then the server cannot have acted on the request.
    """

    def __init__(self, endpoint: str, why: str, *, request_sent: bool = True, service: str = "efile API") -> None:
        self.endpoint = endpoint
        self.why = why
        self.request_sent = request_sent
        super().__init__(f"could not reach the {service} ({endpoint}): {why}")


class UnreachableError(ConnectionFailedError):
    """A service that has never answered cannot be connected to: a wrong URL or a down network, not overload.

    Raised after a short connect budget (RetryPolicy.connect_budget), naming the URL and its setting.
    """

    def __init__(self, service: str, url: str, setting: str, why: str, fix: str, *, endpoint: str = "") -> None:
        super().__init__(endpoint, why, request_sent=False, service=service)
        self.url = url
        self.setting = setting
        self.args = (f"cannot reach the {service} at {url} ({setting}): {why}. {fix}",)


class RetryBudgetExhausted(TransportError):
    """Retries ran out (count or time); carries the last error."""

    def __init__(self, endpoint: str, attempts: int, last: Exception, *, service: str = "efile API") -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.last = last
        super().__init__(
            f"the {service} kept failing ({last}); gave up after {attempts} attempts. "
            "The service may be overloaded or unreachable: wait a minute and try again."
        )


def outcome_unknown(exc: BaseException) -> bool:
    """Whether the server may have acted although this error is all the client saw.

    A lost connection, a timeout, a gateway 5xx, an unreadable answer or a command timeout (911504)
    say nothing about what happened behind them; a rate limit, a 429, an error envelope or a
    connection that was never made do: the request was turned away or never sent.
    """
    if isinstance(exc, RetryBudgetExhausted):
        return outcome_unknown(exc.last)
    if isinstance(exc, ConnectionFailedError):
        return exc.request_sent
    if isinstance(exc, MalformedResponseError):
        return True
    if isinstance(exc, HttpStatusError):
        return exc.status >= 500
    return isinstance(exc, ApiError) and exc.code == "911504"


def error_code_of(exc: BaseException) -> str:
    """A short code for reports: the API's own code where there is one."""
    if isinstance(exc, RetryBudgetExhausted):
        return error_code_of(exc.last)
    if isinstance(exc, ApiError):
        return exc.code
    if isinstance(exc, HttpStatusError):
        return f"http_{exc.status}"
    if isinstance(exc, MalformedResponseError):
        return "malformed_answer"
    if isinstance(exc, UnreachableError):
        return "unreachable"
    if isinstance(exc, ConnectionFailedError):
        return "connection_failed"
    return type(exc).__name__


def is_retryable(exc: BaseException) -> bool:
    """The one rule for what is retried: documented transient codes, 429/5xx and connection failures."""
    if isinstance(exc, RetryableApiError | ConnectionFailedError):
        return True
    if isinstance(exc, HttpStatusError):
        return exc.status == 429 or 500 <= exc.status <= 599
    return False


class PlanRowsChanged(StateStoreError, LookupError):
    """A unit of a plan's rows in the state store is not what its header, and so its token, binds: execution
    stops there (a LookupError too, like rows the store lost, so every reader of rows handles both)."""
