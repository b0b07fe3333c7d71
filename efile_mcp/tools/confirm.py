"""The MCP side of asking the person: `Asker` adapters over form and URL elicitation, in both protocol eras.

The policy (when to ask, how long to wait, what an answer is worth) is the guard's (`guard/removal.py`);
here are only the adapters:

- 2026-07-28 and later: the resolver `ask_person` runs before `remove_paths`' body and returns an `Elicit`
  marker (the guard's question, which marks the plan asked by this session); the SDK turns it into an
  `InputRequiredResult` round trip and calls the tool again with the answer, which `AnsweredForm` hands to
  the guard. The server holds no state in between.
- 2025-11-25 (Claude Desktop): the guard asks from the body through `LiveForm` (`ctx.elicit`, bounded by
  the guard's timeout) and, where the client declares it, opens the review page by URL-mode elicitation.

`session_of` names the connection: the MCP session id over HTTP, else one id per connection object.
"""

from __future__ import annotations

import secrets
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    Context,
    DeclinedElicitation,
    Elicit,
    ElicitationResult,
)
from mcp.shared.exceptions import MCPError
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from ..guard.guard import RemovalRequest
from ..guard.ports import FormAnswer
from ..models.results import Selection
from .state import state_of
from .tool_errors import tool_errors

_ROUND_TRIP_ERA = "2026-07-28"
_SESSION_HEADER = "mcp-session-id"
_CONNECTION_KEY = "efile-mcp.session"

Outcome = Literal["not_needed", "accepted", "declined", "cancelled", "invalid"]


class DeletionConfirmation(BaseModel):
    """The form the person sees."""

    confirm: bool = Field(title="Approve", description="Tick to approve the removal described above.")


@dataclass(frozen=True)
class PersonDecision:
    outcome: Outcome


_connections: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def session_of(ctx: Context[Any, Any]) -> str | None:
    """An opaque id of the connection this call came on (a plan asked about in one is bound to it).

    2026-07-28 without an MCP session id has no connection to name (each request stands alone): None. Its
    form is bound by the SDK's sealed round trip instead, and a plan already asked about is never put to a
    client's form again in a new call (`first_round`), so another client cannot answer for the person.
    """
    headers = ctx.headers
    if headers is not None and headers.get(_SESSION_HEADER):
        return "http:" + str(headers.get(_SESSION_HEADER))
    if _modern(ctx):
        return None
    # 2025-11-25 builds a ServerSession per request; the connection under it lives as long as the client's
    # connection (stdio, in-memory) and keeps per-connection state. (mcp 2.3 exposes it only as `_connection`.)
    session = ctx.request_context.session
    connection = getattr(session, "_connection", None)
    state = getattr(connection, "state", None)
    if isinstance(state, dict):
        known = state.get(_CONNECTION_KEY)
        if not isinstance(known, str):
            known = state[_CONNECTION_KEY] = "conn:" + secrets.token_hex(8)
        return known
    try:
        known = _connections.get(session)
        if known is None:
            known = _connections[session] = "conn:" + secrets.token_hex(8)
        return known
    except TypeError:  # not weak-referenceable: its id lives as long as it does
        return f"conn:{id(session):x}"


def _modern(ctx: Context[Any, Any]) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, _ROUND_TRIP_ERA)


def client_has_form(ctx: Context[Any, Any]) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means form support; url-only does not.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def client_has_url(ctx: Context[Any, Any]) -> bool:
    """URL-mode elicitation declared, and usable: `ctx.elicit_url` is a server-to-client request (legacy era)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and elicitation.url is not None and not _modern(ctx)


async def ask_person(
    dry_run: bool,
    paths: list[str] | None,
    select: Selection | None,
    confirmation_token: str | None,
    ctx: Context[Any, Any],
) -> Elicit[DeletionConfirmation] | PersonDecision:
    """2026-07-28: the guard's question as an `Elicit` round trip, when the guard wants the form shown now."""
    if dry_run or not _modern(ctx) or not client_has_form(ctx):
        return PersonDecision("not_needed")
    state = state_of(ctx)
    async with tool_errors():  # a failed sign-in is the person's to fix: say so, not "crashed"
        text = await state.guard.removal.question(
            RemovalRequest(token=confirmation_token, paths=paths, select=select),
            session_of(ctx),
            # A later round (its state sealed by this server) must ask the same question again.
            first_round=ctx.request_state is None,
        )
    if text is None:
        return PersonDecision("not_needed")
    return Elicit(text, DeletionConfirmation)


def decision_of(answer: ElicitationResult[Any] | None) -> Outcome:
    """What the resolver produced, in either era."""
    if isinstance(answer, AcceptedElicitation):
        data = answer.data
        if isinstance(data, PersonDecision):
            return data.outcome
        if isinstance(data, DeletionConfirmation):
            return "accepted" if data.confirm else "declined"
        return "invalid"
    if isinstance(answer, DeclinedElicitation):
        return "declined"
    if isinstance(answer, CancelledElicitation):
        return "cancelled"
    if isinstance(answer, PersonDecision):
        return answer.outcome
    return "not_needed"


def form_answer(outcome: Outcome) -> FormAnswer | None:
    """The guard's reading of a form's outcome: a cancel or an unreadable answer is no decision."""
    if outcome == "accepted":
        return "approved"
    if outcome == "declined":
        return "declined"
    if outcome in ("cancelled", "invalid"):
        return "no_answer"
    return None


@dataclass
class AnsweredForm:
    """2026-07-28: the form was asked before the body ran (or not at all); `ask` returns that answer."""

    session: str | None
    has_form: bool
    answer: FormAnswer | None = None
    has_url: bool = False

    @property
    def answered(self) -> bool:
        return self.answer is not None

    async def ask(self, question: str, timeout: float) -> FormAnswer:
        return self.answer or "no_answer"

    async def open_url(self, message: str, url: str, timeout: float) -> bool:
        return False


@dataclass
class LiveForm:
    """2025-11-25: asks through `ctx.elicit` (and `ctx.elicit_url`) while the call runs, bounded in time."""

    ctx: Context[Any, Any]
    session: str | None
    has_form: bool
    has_url: bool
    answered: bool = False

    async def ask(self, question: str, timeout: float) -> FormAnswer:
        with anyio.move_on_after(timeout):
            try:
                answer = await self.ctx.elicit(question, DeletionConfirmation)
            except (ValueError, MCPError):  # a malformed answer, or the client answered with an error
                return "no_answer"
            return form_answer(decision_of(answer)) or "no_answer"
        return "no_answer"

    async def open_url(self, message: str, url: str, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            try:
                result = await self.ctx.elicit_url(message, url, "efile-review-" + secrets.token_hex(8))
            except (ValueError, MCPError):
                return False
            return result.action == "accept"
        return False


def asker_for(ctx: Context[Any, Any], resolved: ElicitationResult[Any] | None) -> AnsweredForm | LiveForm:
    """The Asker of this call: the resolver's answer (2026-07-28), or a live form (2025-11-25)."""
    session = session_of(ctx)
    if _modern(ctx):
        return AnsweredForm(session, client_has_form(ctx), form_answer(decision_of(resolved)))
    return LiveForm(ctx, session, client_has_form(ctx), client_has_url(ctx))
