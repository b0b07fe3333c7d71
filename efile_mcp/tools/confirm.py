"""Asking the person, not the model, before a deletion runs: form elicitation in both protocol eras.

The resolver runs before `remove_paths`' body. It asks only when there is something real to ask
about (an execution whose token and path set are valid right now), and only where it can:

- 2026-07-28 and later: it returns an `Elicit` marker; the SDK turns it into an
  `InputRequiredResult` round trip and calls the tool again with the answer. The server holds no
  state in between, so the bound on waiting is the confirmation token's own expiry.
- 2025-11-25 (Claude Desktop): it asks through `ctx.elicit` itself, so it can bound the wait
  (EFILE_CONFIRM_TIMEOUT): some clients declare the capability and never render the form.
"""

from __future__ import annotations

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
from ..models.results import Selection
from .errors import tool_errors
from .state import state_of

_ROUND_TRIP_ERA = "2026-07-28"

Outcome = Literal["not_needed", "unavailable", "accepted", "declined", "cancelled", "timeout", "invalid"]


class DeletionConfirmation(BaseModel):
    """The form the person sees."""

    confirm: bool = Field(title="Delete permanently", description="Tick to delete these paths permanently.")


@dataclass(frozen=True)
class PersonDecision:
    outcome: Outcome


def _client_can_ask(ctx: Context[Any, Any]) -> bool:
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means form support; url-only does not.
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


async def ask_person(
    dry_run: bool,
    paths: list[str] | None,
    select: Selection | None,
    confirmation_token: str | None,
    ctx: Context[Any, Any],
) -> Elicit[DeletionConfirmation] | PersonDecision:
    state = state_of(ctx)
    mode = state.settings.confirm
    if dry_run or mode == "token" or state.settings.read_only:
        return PersonDecision("not_needed")
    if not _client_can_ask(ctx):
        return PersonDecision("unavailable")
    async with tool_errors():  # a failed sign-in is the person's to fix: say so, not "crashed"
        text = await state.guard.question(RemovalRequest(token=confirmation_token, paths=paths, select=select))
    if text is None:
        return PersonDecision("not_needed")  # refused anyway, with the precise reason, by the tool body
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, _ROUND_TRIP_ERA):
        return Elicit(text, DeletionConfirmation)
    with anyio.move_on_after(state.settings.confirm_timeout):
        try:
            answer = await ctx.elicit(text, DeletionConfirmation)
        except (ValueError, MCPError):  # a malformed answer, or the client answered with an error
            return PersonDecision("invalid")
        return PersonDecision(decision_of(answer))
    return PersonDecision("timeout")


def decision_of(answer: ElicitationResult[Any]) -> Outcome:
    """The person's decision from what the resolver produced, in either era."""
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
    return "invalid"


REFUSALS: dict[Outcome, tuple[str, str, bool]] = {
    # outcome: (audit code, message for the agent, spend the token)
    "declined": (
        "person_declined",
        "the person declined the deletion; nothing was deleted and this confirmation token is spent. "
        "Do not retry: ask them what they want instead.",
        True,
    ),
    "cancelled": (
        "person_cancelled",
        "the person dismissed the confirmation; nothing was deleted and this confirmation token is spent. "
        "Ask them before trying again with a new dry run.",
        True,
    ),
    "timeout": (
        "person_no_answer",
        "the person did not answer the confirmation in time; nothing was deleted and this confirmation token is "
        "spent. If they want it, run the dry run again and confirm promptly.",
        True,
    ),
    "invalid": (
        "person_invalid_answer",
        "the confirmation answer could not be read; nothing was deleted and this confirmation token is spent. "
        "Run the dry run again.",
        True,
    ),
    "unavailable": (
        "person_unreachable",
        "this server requires the person to confirm every deletion (EFILE_CONFIRM=human), and this client "
        "cannot show them a confirmation form (no form elicitation support); nothing was deleted. Use a client "
        "that supports elicitation, or ask the person to change EFILE_CONFIRM.",
        False,
    ),
}
