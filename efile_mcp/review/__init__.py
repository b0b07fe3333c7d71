"""The review page: a plan shown whole to the person, who approves or declines it (an adapter, no policy).

`ReviewSite` implements the guard's `ReviewPages` port; `efile_mcp.review.terminal` is the terminal
channel (`efile-mcp approve`). Both record the person's decision in the state store, where the guard's
removal reads it.
"""

from __future__ import annotations

from .site import ReviewSite

__all__ = ["ReviewSite"]
