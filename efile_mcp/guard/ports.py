"""The guard's ports: how a removal reaches the person, and what their decision is.

The guard owns the policy (who must decide, how long to wait, what a decision is worth); adapters
outside it do the talking:

    client form   tools/confirm.py      (MCP elicitation, both protocol eras; URL mode)
    review page   review/               (a loopback page per plan; Approve / Decline)
    terminal      cli `efile-mcp approve` (y/N on the person's own TTY)

A decision is recorded in the state store under the plan id (`StateStore.decide`), first decision wins,
so whichever channel the person used, every replica and every later execution call sees the same one.
`channel` is recorded in the audit honestly: `client_form` means a client answered yes, not that a
person was seen; `token` means no person was asked at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Channel = Literal["client_form", "review_page", "terminal", "token"]
DecisionKind = Literal["approved", "declined"]
#: What a removal does with confirmed paths: move them into the root's quarantine, or delete for good.
RemoveMode = Literal["quarantine", "delete"]


@dataclass(frozen=True)
class Decision:
    """The person's (or a client's) answer about one plan."""

    kind: DecisionKind
    channel: Channel
    #: The mode the person approved, when the channel let them choose (the page's two Approve buttons).
    mode: RemoveMode | None = None
    #: When it was recorded (epoch seconds, the guard's clock).
    at: float = 0.0


class ReviewPages(Protocol):
    """The review page adapter: one loopback URL per plan, carrying a one-time secret of >= 128 bits.

    The URL is for the person only: it never appears in a tool result (text or structured).
    """

    async def url_for(self, plan_id: str, expires_at: float) -> str:
        """The page of this plan (the same URL for the same plan while it lives); starts the listener if needed."""
        ...

    def show(self, url: str) -> bool:
        """Open the page in the person's browser (`webbrowser`, so $BROWSER is honoured).

        False when it could not or must not (EFILE_REVIEW_BROWSER=never, no browser): the URL then went
        to stderr only.
        """
        ...


#: What a client's form came back with. "no_answer" covers a timeout, a cancel and an unreadable answer:
#: a client that declares forms and never draws them (or dismisses them itself) must not decide for the person.
FormAnswer = Literal["approved", "declined", "no_answer"]


class Asker(Protocol):
    """The client of one call, as far as it can reach the person (adapters in tools/confirm.py).

    `session` is an opaque id of the connection (the MCP session id over HTTP, one per connection otherwise):
    a plan being asked about in one session cannot be answered by form or executed from another.
    """

    @property
    def session(self) -> str | None: ...

    @property
    def has_form(self) -> bool:
        """The client declared form elicitation (which is no proof that it draws forms)."""
        ...

    @property
    def has_url(self) -> bool:
        """The client can be asked to open a URL for the person (URL-mode elicitation, usable in this era)."""
        ...

    @property
    def answered(self) -> bool:
        """The form was already put to the person in this call (2026-07-28 asks before the tool body runs):
        `ask` returns that answer without asking again."""
        ...

    async def ask(self, question: str, timeout: float) -> FormAnswer:
        """Show the form and wait at most `timeout` seconds for its answer."""
        ...

    async def open_url(self, message: str, url: str, timeout: float) -> bool:
        """Ask the client to open `url` for the person (URL mode). True when the client says it did."""
        ...
