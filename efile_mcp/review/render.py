"""The review page's HTML: what it says about a plan, rendered on the server with every value escaped.

The paths themselves are fetched by page.js a page at a time (the JSON routes); everything else — the
totals, the quota, the mode, the types, the largest paths, the outcome and the buttons — is here, so the
page reads (and decides) without JavaScript too.
"""

from __future__ import annotations

from html import escape
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

from ..guard.report import human_age
from ..models.units import human_size
from .site import approvable_modes

if TYPE_CHECKING:
    from ..guard.ports import Decision
    from .site import Page
    from .view import PlanView

LARGEST_SHOWN = 10

MODE_TEXT = {
    "quarantine": ("move to quarantine", "moved into the .efile-quarantine folder of their root: restorable"),
    "delete": ("delete permanently", "deleted for good: this cannot be undone"),
}
CHANNEL_TEXT = {
    "review_page": "on this page",
    "terminal": "in a terminal (efile-mcp approve)",
    "client_form": "through the AI client's form",
    "token": "by the token alone (no person asked)",
}
OUTCOME_LABELS = {
    "removed": "removed",
    "quarantined": "moved to quarantine",
    "queued": "queued",
    "missing": "already gone",
    "failed": "failed",
    "changed": "changed since the dry run, not sent",
    "refused": "refused",
}


def _template() -> Template:
    return Template(resources.files("efile_mcp.review").joinpath("assets", "page.html").read_text("utf-8"))


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _when(epoch: float, now: float) -> str:
    seconds = epoch - now
    if seconds <= 0:
        return human_age(epoch, now) or "just now"
    minutes = int(seconds // 60)
    if minutes >= 120:
        return f"in {minutes // 60} hours"
    return f"in {minutes} minute{'s' if minutes != 1 else ''}" if minutes else "in under a minute"


def _decision_text(decision: Decision | None, now: float) -> str:
    if decision is None:
        return ""
    how = CHANNEL_TEXT.get(decision.channel, decision.channel)
    mode = f", to {MODE_TEXT[decision.mode][0]}" if decision.mode in MODE_TEXT else ""
    at = f" {human_age(decision.at, now)}" if decision.at else ""
    return f"{how}{at}{mode}"


def _status(page: Page, now: float, already: bool) -> tuple[str, str]:
    """(css class, the sentence) saying where the plan stands."""
    state = page.state
    decision = state.decision if state is not None else None
    by = _decision_text(decision, now)
    if page.status == "pending":
        return "pending", (
            f"Waiting for your decision. Nothing is removed until you choose below "
            f"(this plan expires {_when(page.record.expires_at, now)})."
        )
    note = "A decision had already been made: yours was not recorded. " if already else ""
    if page.status == "approved":
        return "approved", f"{note}Approved {by}. The agent's next call with its token carries it out."
    if page.status == "declined":
        return "declined", f"{note}Declined {by}. Nothing will be removed; the token is spent."
    if page.status == "running":
        return "running", f"{note}Approved {by}; it is being carried out now."
    if page.status == "done":
        counts = (state.outcome or {}) if state is not None else {}
        parts = [f"{n:,} {OUTCOME_LABELS.get(k, k)}" for k, n in counts.items() if n]
        done = "; ".join(parts) if parts else "see the agent's answer and the audit log"
        return "done", f"{note}Carried out ({'approved ' + by if by else 'done'}): {done}."
    if page.status == "spent":
        return "spent", f"{note}This plan's confirmation was used up or refused: nothing more can be decided here."
    return "expired", (
        f"This plan expired {human_age(page.record.expires_at, now) or ''}: nothing can be decided here. "
        "Ask the agent for a new dry run."
    )


def _totals(view: PlanView, now: float) -> str:
    t = view.totals()
    at_least = "at least " if t.get("lower_bound") else ""
    newest, newest_detail = "unknown", ""
    if t.get("newest_modified"):
        from datetime import datetime

        try:
            stamp = datetime.fromisoformat(str(t["newest_modified"])).timestamp()
            newest, newest_detail = human_age(stamp, now) or "unknown", str(t["newest_modified"])
        except ValueError:
            newest = str(t["newest_modified"])

    def number(key: str) -> int:
        return int(t.get(key) or 0)

    size = number("total_size")
    rows = [
        ("would_remove", "Paths", number("would_remove"), f"{number('would_remove'):,}", ""),
        ("total_size", "Size (whole trees)", size, f"{at_least}{human_size(size)}", f"{size:,} bytes"),
        ("file_count", "Files in all", number("file_count"), f"{at_least}{number('file_count'):,}", ""),
        ("folder_count", "Folders among the paths", number("folder_count"), f"{number('folder_count'):,}", ""),
        ("newest_modified", "Newest change", t.get("newest_modified") or "", newest, newest_detail),
        ("refused", "Refused", number("refused"), f"{number('refused'):,}", ""),
        ("missing", "Missing", number("missing"), f"{number('missing'):,}", ""),
    ]
    if t.get("covered"):
        rows.append(("covered", "Inside other paths (go with them)", number("covered"), f"{number('covered'):,}", ""))
    return "\n".join(
        f'<div><dt>{_e(label)}</dt><dd data-total="{_e(key)}" data-value="{_e(value)}">{_e(text)}'
        + (f"<small>{_e(detail)}</small>" if detail else "")
        + "</dd></div>"
        for key, label, value, text, detail in rows
    )


def _quota(view: PlanView) -> str:
    rows = []
    for entry in view.plan.quota:
        limit, used, after = entry.get("limit_bytes"), entry.get("used_bytes"), entry.get("after_bytes")

        def size(value: Any) -> str:
            return human_size(int(value)) if isinstance(value, int | float) else "unknown"

        rows.append(
            f'<tr><td class="path">{_e(entry.get("path", ""))}</td><td>{_e(size(limit))}</td>'
            f"<td>{_e(size(used))} &rarr; {_e(size(after))}</td></tr>"
        )
    if not rows:
        return '<p class="muted">The quota is not known for these paths.</p>'
    return (
        "<table><thead><tr><th scope=col>Quota of</th><th scope=col>Limit</th><th scope=col>Used now &rarr; after"
        "</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _types(view: PlanView) -> str:
    rows = "".join(
        f'<tr><td>{_e(t["type"])}</td><td class="num">{t["paths"]:,}</td><td class="num">{_e(t["size_text"])}</td></tr>'
        for t in view.types()
    )
    return (
        "<table><thead><tr><th scope=col>Type</th><th scope=col class=num>Paths</th><th scope=col class=num>Size"
        "</th></tr></thead><tbody>" + rows + "</tbody></table>"
    )


def _largest(view: PlanView) -> str:
    top = view.top_shown.rstrip("/") + "/"
    rows = "".join(
        f'<tr><td class="path" title="{_e(r["shown"])}">{_e(_below(r["shown"], top))}</td><td>{_e("folder" if r["kind"] == "directory" else r["kind"])}</td>'
        f'<td class="num">{_e(r["size_text"])}'
        f'</td><td class="num">{r["files"]:,}</td><td>{_e(r["age"] or "")}</td></tr>'
        for r in view.largest(LARGEST_SHOWN)
    )
    return (
        "<table><thead><tr><th scope=col>Path</th><th scope=col>Type</th><th scope=col class=num>Size</th>"
        "<th scope=col class=num>Files</th><th scope=col>Newest change</th></tr></thead><tbody>"
        + rows
        + "</tbody></table>"
    )


def _below(shown: str, top: str) -> str:
    """A path as the tables show it: below the folder the tree starts at (named above the tree)."""
    return "…/" + shown[len(top) :] if shown.startswith(top) and len(shown) > len(top) else shown


def _actions(page: Page, csrf: str) -> str:
    if page.status != "pending" or page.view is None:
        return ""
    buttons = []
    for index, mode in enumerate(approvable_modes(page.view)):
        verb = MODE_TEXT.get(mode, (mode, ""))[0]
        label = f"Approve: {verb}" if index == 0 else f"Approve, but {verb} instead"
        css = "approve danger" if mode == "delete" else "approve"
        buttons.append(
            f'<button type="submit" name="decision" value="approve:{_e(mode)}" class="{css}">{_e(label)}</button>'
        )
    buttons.append('<button type="submit" name="decision" value="decline" class="decline">Decline</button>')
    return (
        '<form method="post" action="decide" id="decide" class="actions">'
        f'<input type="hidden" name="csrf" value="{_e(csrf)}">' + "".join(buttons) + "</form>"
    )


def render_page(page: Page, *, csrf: str, now: float, already: bool = False) -> str:
    css, sentence = _status(page, now, already)
    view = page.view
    values: dict[str, str] = {
        "status_class": css,
        "status_text": _e(sentence),
        "plan_id": _e(page.record.plan_id),
        "actions": _actions(page, csrf),
    }
    if view is None:
        values |= {
            "title": "Review: this plan has expired",
            "mode_class": "expired",
            "mode_text": "",
            "totals": "",
            "quota": "",
            "types": "",
            "largest": "",
            "browse_hidden": "hidden",
            "top": "",
            "exceptions_count": "0",
        }
    else:
        plan = view.plan
        totals = view.totals()
        verb, meaning = MODE_TEXT.get(plan.mode, (plan.mode, ""))
        values |= {
            "title": _e(
                f"Review: {verb} {_count(int(totals.get('would_remove', 0)), 'path')}, "
                f"{human_size(int(totals.get('total_size', 0)))}"
            ),
            "mode_class": _e(plan.mode),
            "mode_text": _e(f"Mode: {verb}. The paths are {meaning}."),
            "totals": _totals(view, now),
            "quota": _quota(view),
            "types": _types(view),
            "largest": _largest(view),
            "browse_hidden": "",
            "top": _e(view.top_shown),
            "exceptions_count": f"{len(plan.exceptions):,}",
        }
    return _template().substitute(values)
