"""One removal, preview to execution: the guard's destructive half, and its confirmation policy.

    preview(paths | select, mode)  policy -> the real objects -> Plan (mode, totals, exceptions) -> store -> token
    question(request, session)     the form's text, when this call's client should ask the person (2026-07-28 era)
    execute(request, asker)        open      token -> the stored plan, once; the request must match it
                                   admit     who confirms: the plan's state, the person's decision (form, page,
                                             URL, terminal), or the token alone where nothing reaches a person
                                   run       redeemed under a lease -> listed again -> intent (fail closed) ->
                                             sent (quarantine or delete) -> outcome; a run whose process died
                                             is resumed by the next call with the same token

Tools translate arguments and answers; every refusal, its words and whether it spends the token are here
(`REFUSALS`). The person is reached through ports (`Asker`: the client's form or URL mode; `ReviewPages`:
the page in their browser); `efile-mcp approve` decides through the state store like the page does.

Waiting, not burning: without a decision the call waits up to `confirm_timeout` seconds (polling the
store, sending progress), then answers that the plan waits for the person; the token stays valid until
its expiry. Only a decline spends it. A form that times out, is cancelled or answers unreadably is *no
decision* (a client may dismiss forms it never drew): the page is opened instead. An explicit "decline"
from a form is the person's no.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import anyio
import anyio.abc

from ..client.remover import EfileRemover
from ..client.walk import Listings, TreeWalk, WalkLimits
from ..errors import EfileMcpError
from ..models.results import ITEMS_LISTED_MAX, QuotaInfo, RemoveItem, RemovePathsResult, RemoveSummary, Selection
from .audit import AuditLog
from .execution import PlanRun, _NothingSent, alongside, store_trouble
from .insight import Matcher, find, incomplete_reason
from .inspect import Inspector
from .paths import PathPolicy, PathRefusal, collapse, display
from .planned import QuotaFreed, audit_plan, seal
from .ports import Asker, Channel, Decision, FormAnswer, RemoveMode, ReviewPages
from .quarantine import is_quarantine_path as in_quarantine
from .report import FORM_PATHS, Detail, FormQuestion, Tally, item_of
from .requests import (
    REFUSED_PATHS_AUDITED,
    TOOL,
    GuardRefusal,
    Progress,
    RemovalRequest,
    selection_key,
    walk_progress,
)
from .sealing import ConfirmationRefused, ConfirmationSigner, Sealed
from .seen import (
    ROWS_PER_CHUNK,
    Plan,
    SeenPath,
    load_header,
    plan_rows,
    save_plan,
    stored_digest,
    verified_units,
)
from .selection import EXCEPTIONS_KEPT, SelectionDryRun
from .store import LEASE_SECONDS, PlanState, Redemption, StateStore

log = logging.getLogger("efile_mcp.guard")

T = TypeVar("T")
ConfirmMode = Literal["auto", "human", "token"]
LinksInside = Literal["refuse", "remove"]

#: How often a waiting call looks at the plan's state (a decision from the page or terminal lands there).
POLL_SECONDS = 0.5
#: A form unanswered this long may never have been drawn (Claude Desktop's chat): the page opens beside it.
FORM_GRACE_SECONDS = 15.0
#: URL-mode elicitation is tried only with at least this much of the wait left (the client must show it).
URL_MODE_MIN_SECONDS = 1.0
_AGAIN = "call remove_paths again with the same confirmation_token (it stays valid until it expires)"

#: Every refusal of an execution: code -> the agent's message. Spending is decided where the state changes
#: (a decline is recorded as declined; nothing else spends the token).
REFUSALS: dict[str, str] = {
    "read_only": "efile-mcp runs read-only (EFILE_READ_ONLY): removal is disabled.",
    "reused": "this confirmation token was already used or refused; nothing was deleted now: each token confirms "
    "one execution. Run remove_paths with dry_run=true again to preview what is left.",
    "person_declined": "the person declined this removal; nothing was deleted and this confirmation token is "
    "spent. Do not retry: ask them what they want instead.",
    "already_executed": "this plan was already executed{outcome}; nothing more was done. Follow queued paths "
    "with get_task (plan_id={plan_id!r}); for anything left, run a new dry run.",
    "running": "this plan is being executed right now by another call; nothing more was done. Call again in "
    "a minute to read its outcome, or follow it with get_task (plan_id={plan_id!r}).",
    "other_session": "another session is asking the person about this plan; nothing was deleted. Only the "
    "person can let this session go on: they approve it on its review page (opened in their browser where "
    "possible) or in a terminal with `efile-mcp approve`; then " + _AGAIN + ".",
    "awaiting_person": "the plan is waiting for the person's decision ({where}); nothing was deleted and the "
    "token is not spent. Tell the person where to decide, then " + _AGAIN + ".",
    "person_unreachable": "this server requires the person to confirm every deletion (EFILE_CONFIRM=human), "
    "and no channel here can reach them: this client shows no form and no browser page can be opened. "
    "Nothing was deleted and the token is not spent: the person can approve it in their own terminal with "
    "`efile-mcp approve`; then " + _AGAIN + ".",
    "mode_impossible": "the person approved this plan as a quarantine, which it cannot be (its paths are inside "
    "the quarantine, so removing them is a permanent purge, or no quarantine is set up here); nothing was "
    "deleted and this token is spent. Run a new dry run and let the person approve what it really does.",
    "quarantine_unavailable": "mode 'quarantine' is not available on this server (no quarantine is set up); "
    "nothing was planned. Use mode 'delete' only if the person agrees the removal is permanent.",
}


class Host(Protocol):
    """What a removal uses of the guard (its reading side, its state and its settings)."""

    policy: PathPolicy
    signer: ConfirmationSigner
    store: StateStore
    audit: AuditLog
    max_paths: int
    read_only: bool
    clock: Callable[[], float]
    _remover: EfileRemover

    def _listings(self, *, keep: bool = True) -> Listings: ...

    def _walk_limits(self, max_entries: int | None = None) -> WalkLimits: ...

    async def _load_walk(
        self, walk_id: str, prefix: str, tool: str, *, what: str = "resume value", take: bool = False
    ) -> dict[str, Any]: ...

    async def _keep_walk(
        self, walk_id: str | None, prefix: str, finished: bool, state: Callable[[], dict[str, Any]]
    ) -> str | None: ...

    async def _ready(self) -> None: ...

    async def quota_now(self) -> list[QuotaInfo]: ...

    async def task_states(self, task_ids: Sequence[str]) -> dict[str, str]: ...


class QuarantineSender(Protocol):
    """Moves confirmed paths into their root's quarantine (guard/quarantine.py); one known state per path."""

    async def send(
        self, plan_id: str, paths: Sequence[SeenPath], progress: Progress | None, *, batch: int | None = None
    ) -> dict[str, RemoveItem]: ...


@dataclass(frozen=True)
class _Opened:
    """A request whose token is genuine and whose plan is loaded: each call opens it once."""

    plan: Plan
    sealed: Sealed
    request: RemovalRequest


@dataclass(frozen=True)
class _Admitted:
    redemption: Redemption
    confirmed_by: Channel
    mode: RemoveMode


class Removal:
    """Preview and execution of removals, with the policy that decides who confirms them."""

    def __init__(
        self,
        host: Host,
        *,
        confirm: ConfirmMode = "auto",
        confirm_timeout: float = 120.0,
        default_mode: RemoveMode = "quarantine",
        links_inside: LinksInside = "refuse",
        pages: ReviewPages | None = None,
        quarantine: QuarantineSender | None = None,
        poll_seconds: float = POLL_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        form_grace: float = FORM_GRACE_SECONDS,
        max_plan_paths: int = 1_000_000,
    ) -> None:
        self.host = host
        self.confirm = confirm
        self.confirm_timeout = confirm_timeout
        self.default_mode = default_mode
        self.links_inside = links_inside
        self.pages = pages
        self.quarantine = quarantine
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.form_grace = form_grace
        #: A selection may expand to this many paths (EFILE_MAX_PLAN_PATHS); typed paths stay under max_paths.
        self.max_plan_paths = max_plan_paths
        #: Plans asked about in another session whose page this process has opened again.
        self._reshown: set[str] = set()

    # ------------------------------------------------------------------------------------ refusals

    async def _refuse(
        self, code: str, message: str, *, dry_run: bool, paths: Sequence[str] = (), quiet: bool = False, **extra: Any
    ) -> None:
        """Audit the refusal (unless `quiet`: only looking, the call that acts will audit it) and raise it."""
        if not quiet:
            await self.host.audit.write(
                "refusal",
                tool=TOOL,
                dry_run=dry_run,
                decision="refused",
                reason=code,
                paths_count=len(paths),
                paths=[p[:300] for p in list(paths)[:REFUSED_PATHS_AUDITED]],
                **extra,
            )
        raise GuardRefusal(code, message)

    async def _refuse_code(self, code: str, plan: Plan, **words: str) -> None:
        await self._refuse(
            code, REFUSALS[code].format(plan_id=plan.plan_id, **words), dry_run=False, plan_id=plan.plan_id
        )

    # ------------------------------------------------------------------------------------ preview

    def _screen(self, paths: Sequence[str]) -> tuple[list[str], dict[str, str], list[str]]:
        """Policy (no I/O): distinct paths, refusals by path, and the accepted ones.

        A folder named together with a protected path inside it would take that path with it: the request
        itself says the protected path matters, so the folder is refused too, however the inner path is spelled.
        """
        policy = self.host.policy
        distinct = list(dict.fromkeys(paths))
        refused: dict[str, str] = {}
        accepted: dict[str, None] = {}
        protected_inner: list[tuple[str, str]] = []
        for path in distinct:
            verdict = policy.check(path)
            if isinstance(verdict, PathRefusal):
                refused[path] = verdict.message
                if isinstance(path, str) and policy.protected_component(path):
                    protected_inner.append((path, "/" + "/".join(p for p in path.split("/") if p)))
            else:
                accepted[verdict] = None
        for shown, canonical in protected_inner:
            for ancestor in list(accepted):
                if canonical.startswith(ancestor.rstrip("/") + "/"):
                    del accepted[ancestor]
                    refused[ancestor] = (
                        f"it contains {display(shown)}, which is protected and named in this same request: removing "
                        "this folder would remove it too. Name the other contents individually instead."
                    )
        return distinct, refused, list(accepted)

    def _bound(self, count: int, what: str) -> str | None:
        """Paths an agent types in one call stay under EFILE_MAX_PATHS: more belong in a `select`."""
        limit = self.host.max_paths
        if count > limit:
            return (
                f"{what} {count} paths; the limit is {limit} per call for paths typed out (EFILE_MAX_PATHS). "
                "Nothing was done. Split the list across calls, or describe the paths with select (path, name "
                "pattern, age, size, type): a selection is planned and approved whole up to "
                f"{self.max_plan_paths} paths (EFILE_MAX_PLAN_PATHS)."
            )
        return None

    def _bound_selection(self, count: int) -> str | None:
        """A selection is planned whole up to EFILE_MAX_PLAN_PATHS. Never advise removing a parent folder: that
        would take the entries the selection left out with it."""
        limit = self.max_plan_paths
        if count > limit:
            return (
                f"the selection matches {count} paths; the limit is {limit} paths per plan (EFILE_MAX_PLAN_PATHS). "
                "Nothing was done. Narrow the selection (a deeper select.path, a name pattern, an age or size "
                "bound) and remove the matches in several plans, one selection each."
            )
        return None

    def _mode_for(self, asked: RemoveMode | None, accepted: Sequence[str]) -> tuple[RemoveMode, bool]:
        """The plan's mode, and whether it is a purge (paths inside the quarantine: always permanent)."""
        if accepted and all(in_quarantine(p) for p in accepted):
            return "delete", True
        mode = asked or self.default_mode
        if mode == "quarantine" and self.quarantine is None and asked is None:
            mode = "delete"  # the default where no quarantine is set up; an explicit request is refused instead
        return mode, False

    def _policy_key(self) -> str:
        """What a folder's reading is checked against beyond its path: the protected names and whether links
        inside are allowed. A dry run read across calls is refused if it changed meanwhile (guard/selection.py)."""
        names = sorted(self.host.policy.protected_names)
        return hashlib.sha256(json.dumps([names, self.links_inside]).encode()).hexdigest()[:16]

    def _inspector(
        self, listings: Listings, mode: str, limits: WalkLimits | None = None, resume: dict[str, TreeWalk] | None = None
    ) -> Inspector:
        # A move never follows links, and EFILE_LINKS_INSIDE=remove says the storage removes links as links.
        allow = mode == "quarantine" or self.links_inside == "remove"
        limits = limits or self.host._walk_limits()
        return Inspector(listings, self.host.policy, limits, links_inside="allow" if allow else "refuse", resume=resume)

    async def preview(
        self,
        paths: Sequence[str] | None,
        select: Selection | None,
        *,
        mode: RemoveMode | None = None,
        detail: Detail = "auto",
        progress: Progress | None = None,
        resume: str | None = None,
    ) -> RemovePathsResult:
        host = self.host
        await host._ready()
        if host.read_only:
            raise GuardRefusal("read_only", REFUSALS["read_only"])
        # A dry run whose folders were too big for one call reads on from where their walks stopped (H4).
        walks: dict[str, TreeWalk] = {}
        if resume:
            state = await host._load_walk(resume, "dry-", "remove_paths (a dry run)")
            if state.get("k") == "files":  # a selection planned as it is found (guard/selection.py)
                # Claimed by this call alone: two calls writing on from one state would mix their rows.
                state = await host._load_walk(resume, "dry-", "remove_paths (a dry run)", take=True)
                selection = SelectionDryRun.from_json(self, state, resume)
                try:
                    return await selection.plan(progress)
                finally:
                    if not selection.settled:  # refused, failed or cancelled part-way: the next call reads on
                        with anyio.CancelScope(shield=True):  # from the state this one took, as it was
                            await host._keep_walk(resume, "dry-", False, lambda: state)
            paths, mode = state["p"], state["m"]
            select = Selection.model_validate(state["s"]) if state["s"] is not None else None
            walks = {path: TreeWalk.from_json(walk) for path, walk in state["w"].items()}
        if mode == "quarantine" and self.quarantine is None:
            await self._refuse("quarantine_unavailable", REFUSALS["quarantine_unavailable"], dry_run=True)
        if select is not None and not walks:  # (walks: a dry run begun by an older version, held whole)
            return await SelectionDryRun(self, select, mode, detail).plan(progress)
        listings = host._listings()
        limits = host._walk_limits()  # one reading budget for the whole call
        not_found_note: str | None = None
        if select is not None:
            named, matched_covered, select_note = await self._expand(select, listings, limits, progress)
            requested = len(named) + matched_covered
            not_found_note = select_note
        else:
            assert paths is not None
            if not paths:
                await self._refuse(
                    "no_paths", "name at least one absolute path to remove (or give select).", dry_run=True
                )
            if (why := self._bound(len(paths), "this call names")) is not None:
                await self._refuse("too_many_paths", why, dry_run=True, paths=paths)
            named, matched_covered, requested = list(paths), 0, len(paths)
        distinct, refused, accepted = self._screen(named)
        plan_mode, purge = self._mode_for(mode, accepted)
        if not purge and any(in_quarantine(p) for p in accepted):
            # A purge is permanent and a quarantine never goes into itself: never mixed with other paths.
            for path in [p for p in accepted if in_quarantine(p)]:
                accepted.remove(path)
                refused[path] = (
                    "it is inside a quarantine: purging it is permanent; remove quarantined entries in a call of "
                    "their own."
                )
        if plan_mode == "quarantine":
            for path in [p for p in accepted if "," in p]:
                accepted.remove(path)
                refused[path] = (
                    "its path holds a comma, and the storage's move takes its sources comma-separated: it cannot "
                    "be quarantined. Remove it with mode='delete' (permanent), or rename it and dry-run again."
                )
        collapsed = collapse(accepted)
        to_check = list(collapsed.to_send)
        if select is not None and (why := self._bound_selection(len(to_check))) is not None:
            await self._refuse("too_many_paths", why, dry_run=True)
        inspection = await self._inspector(listings, plan_mode, limits, walks).check(to_check, walk_folders=True)
        resume_id = None
        if inspection.unfinished:
            # Not whole yet: no plan and no token until every folder is read; the walks so far are kept.
            resume_state = {
                "p": list(paths) if paths is not None else None,
                "s": selection_key(select) if select is not None else None,
                "m": mode,
                "w": {path: walk.to_json() for path, walk in inspection.unfinished.items()},
            }
            resume_id = await host._keep_walk(resume, "dry-", False, lambda: resume_state)
            for path in inspection.unfinished:
                inspection.refused[path] = (
                    "it is not read whole yet (this call's walk budget, EFILE_WALK_MAX_ENTRIES / "
                    "EFILE_WALK_MAX_SECONDS): call remove_paths again with resume to read on from where it stopped."
                )
        elif resume:
            await host.store.drop_walk(resume)

        # Each path's item, in the order named, into a tally: the answer is the same size whatever the count.
        def status_of(path: str) -> str:
            if path in refused or path in inspection.refused:
                return "refused"
            return "would_remove" if path in inspection.seen else "missing"

        tally = Tally(detail)
        removable: list[SeenPath] = []
        exceptions: list[list[str]] = []  # for the person's review page, the first EXCEPTIONS_KEPT
        for path in distinct:
            outer = collapsed.covered.get(path)
            if outer is not None:
                if select is None:  # a typed path inside another: listed with its folder's fate, not counted
                    reason = f"inside {display(outer)}, which this call removes; not sent separately"
                    tally.add(RemoveItem(path=path, status=status_of(outer), reason=reason), counts=False)  # type: ignore[arg-type]
                continue
            seen = inspection.seen.get(path)
            if seen is not None:
                tally.add(item_of(seen))
                tally.count_removed(seen)
                removable.append(seen)
                continue
            why_refused = refused.get(path) or inspection.refused.get(path)
            item = (
                RemoveItem(path=path, status="refused", reason=why_refused)
                if why_refused is not None
                else RemoveItem(path=path, status="missing", reason=inspection.missing.get(path))
            )
            tally.add(item)
            if len(exceptions) < EXCEPTIONS_KEPT:
                exceptions.append([item.path, item.status, item.reason or ""])
        covered = [p for p, outer in collapsed.covered.items() if outer in inspection.seen]
        summary = tally.summary(requested=requested, covered=len(collapsed.covered) + matched_covered)
        plan_id = secrets.token_hex(12)
        now = host.clock()
        token = expires_iso = None
        if removable and resume_id is None:
            freed = QuotaFreed(await host.quota_now())
            freed.add(removable)
            plan = Plan(
                plan_id=plan_id,
                expires_at=float(int(now + host.signer.ttl)),
                paths=removable,
                select=selection_key(select) if select is not None else None,
                covered=covered,
                created_at=now,
                mode=plan_mode,
                exceptions=exceptions,
                summary=summary.model_dump(exclude_none=True),
                quota=freed.before_after(plan_mode),
            )
            await save_plan(host.store, plan)  # rows in chunks, then the small header
            token, expires_iso = seal(host.signer, plan, summary)
        await audit_plan(
            host.audit,
            plan_id=plan_id if token else None,
            mode=plan_mode,
            select=select,
            removable=[s.path for s in removable] if len(removable) <= ROWS_PER_CHUNK else None,
            count=len(removable),
            summary=summary,
            exceptions=exceptions,
        )
        for first in range(0, len(removable) if len(removable) > ROWS_PER_CHUNK else 0, ROWS_PER_CHUNK):
            # A big plan's paths follow its record a chunk a line: every line of the log stays small.
            await host.audit.write(
                "plan_paths",
                tool=TOOL,
                plan_id=plan_id if token else None,
                first=first,
                paths=[s.path for s in removable[first : first + ROWS_PER_CHUNK]],
            )
        if resume_id is not None:
            next_step = (
                f"Not read whole yet: {len(inspection.unfinished)} folder(s) are bigger than one call may read. Call "
                "remove_paths again with resume set to this resume value (a dry run) to read on; the plan and its "
                "token come when everything is read."
            )
        elif token is None:
            next_step = "Nothing here can be removed; see each item's status and reason."
        else:
            next_step = self._next_step_planned(plan_mode, purge, summary, expires_iso or "")
        if not_found_note:
            next_step = not_found_note + " " + next_step
        result = RemovePathsResult(
            dry_run=True,
            plan_id=plan_id if token else None,
            summary=summary,
            confirmation_token=token,
            expires_at=expires_iso,
            confirm_paths=[s.path for s in removable] if token and len(removable) <= ITEMS_LISTED_MAX else None,
            next_step=next_step,
            resume=resume_id,
        )
        return tally.shape(result)

    def _next_step_planned(self, mode: str, purge: bool, summary: RemoveSummary, expires_iso: str) -> str:
        how = (
            "call remove_paths with dry_run=false and confirmation_token set to this token (paths and select "
            f"may be left out; the token stands for exactly this plan), before {expires_iso}."
        )
        return (
            f"{_mode_words(mode, purge)} Show the person what would be removed ({summary.would_remove} "
            f"path(s), {'at least ' if summary.lower_bound else ''}{summary.total_size} bytes, "
            f"{summary.file_count} files). To go ahead, {how}{self._who_confirms()}"
        )

    def _who_confirms(self) -> str:
        if self.confirm == "token":
            return " The token alone confirms it (EFILE_CONFIRM=token)."
        return (
            " The person then confirms it themselves (a form in this client, a page in their browser, or "
            "`efile-mcp approve` in a terminal); the call waits for their decision."
        )

    async def _expand(
        self, select: Selection, listings: Listings, limits: WalkLimits, progress: Progress | None
    ) -> tuple[list[str], int, str | None]:
        """A selection -> the matching paths (a match inside another match is covered), walking below select.path."""
        host = self.host
        root = select.path
        await self._check_selection_root(select, listings, limits)
        matches, stats = await find(
            listings, select, Matcher(select, host.clock()), limits=limits, progress=walk_progress(progress)
        )
        if any(u.path == root for u in stats.unreadable):
            await self._refuse(
                "select_path", f"cannot list {display(root)}: {stats.unreadable[0].reason}", dry_run=True, paths=[root]
            )
        collapsed = collapse(m.path for m in matches)
        note = None
        if not stats.complete:
            note = (
                f"The search was incomplete ({incomplete_reason(stats, 'EFILE_WALK_MAX_ENTRIES')}): there may be "
                "more matches than this plan holds."
            )
            if stats.stopped and select.type != "file":
                # Folder matches are held until the search ends (a folder's size and age are its tree's), so this
                # search cannot read on across calls; a file selection can.
                note += (
                    " To plan every matching file of a tree this large, select with type='file': its search reads "
                    "on across calls (resume) and plans up to EFILE_MAX_PLAN_PATHS paths in one approval."
                )
        if not matches:
            note = (note + " " if note else "") + "The selection matches nothing."
        return list(collapsed.to_send), len(collapsed.covered), note

    async def _check_selection_root(
        self, select: Selection, listings: Listings | None = None, limits: WalkLimits | None = None
    ) -> None:
        """select.path must be allowed and a real folder (refused here with why, audited, otherwise)."""
        host, root = self.host, select.path
        problem = self._selection_root_problem(root)
        if problem:
            await self._refuse("select_path", problem, dry_run=True, paths=[root])
        if root not in host.policy.allowed_roots:
            listings = listings or host._listings()
            inspection = await Inspector(listings, host.policy, limits or host._walk_limits()).check(
                [root], walk_folders=False
            )
            seen = inspection.seen.get(root)
            if seen is None or seen.kind != "directory":
                reason = inspection.refused.get(root) or inspection.missing.get(root) or "it is not a folder"
                await self._refuse(
                    "select_path",
                    f"select.path {display(root)} cannot be searched: {reason}",
                    dry_run=True,
                    paths=[root],
                )

    def _selection_root_problem(self, root: str) -> str | None:
        policy = self.host.policy
        if root in policy.allowed_roots:
            return None
        verdict = policy.check(root)
        if isinstance(verdict, PathRefusal):
            return f"select.path is not searchable for removal: {verdict.message}"
        return None

    # ------------------------------------------------------------------------------------ open

    async def _open(self, request: RemovalRequest, *, quiet: bool = False) -> _Opened:
        """The stored plan a request names, if the token is genuine and the request matches it. Raises GuardRefusal.

        `quiet`: only looking (the form's question); the execution that follows refuses (and audits) for real.
        """
        host = self.host
        try:
            sealed = host.signer.unseal(request.token)
        except ConfirmationRefused as exc:
            await self._refuse(exc.code, str(exc), dry_run=False, paths=request.paths or (), quiet=quiet)
            raise AssertionError("unreachable") from None
        plan = await load_header(host.store, sealed.plan_id)
        # The header must be what the token binds (its units' digests; each unit of rows is checked against its own
        # when execution reads it, just before sending it).
        digest = None if plan is None else await stored_digest(host.store, plan)
        if plan is None or digest is None:
            await self._refuse(
                "unknown_plan",
                # The token is valid (sealed here, not expired): a shared store that lacks its plan lost it.
                "the state store lost the plan behind this confirmation token (Redis was restarted without "
                "persistence, or flushed): nothing was deleted; run remove_paths with dry_run=true again for a new "
                "token."
                if host.store.shared
                else "the plan behind this confirmation token is no longer known (it expired, or the state store "
                "lost it, or it was made by a server that does not share this one's state store): nothing was "
                "deleted; run remove_paths with dry_run=true again.",
                dry_run=False,
                quiet=quiet,
                plan_id=sealed.plan_id,
            )
        assert plan is not None
        if digest != sealed.digest or plan.digest != sealed.digest:
            await self._refuse(
                "invalid_token",
                "the confirmation token does not match its plan: run a new dry run.",
                dry_run=False,
                quiet=quiet,
                plan_id=sealed.plan_id,
            )
        await self._match(request, plan, quiet=quiet)
        return _Opened(plan=plan, sealed=sealed, request=request)

    async def _match(self, request: RemovalRequest, plan: Plan, *, quiet: bool) -> None:
        """Paths or a selection given with the token must be the plan's own."""
        if request.paths is not None:
            if (why := self._bound(len(request.paths), "this call names")) is not None:
                await self._refuse("too_many_paths", why, dry_run=False, paths=request.paths, quiet=quiet)
            _, refused, accepted = self._screen(request.paths)
            if refused:
                first = next(iter(refused.values()))
                await self._refuse(
                    "policy",
                    f"{len(refused)} path(s) are not allowed, e.g. {first} Nothing was "
                    "deleted. Remove them from the request (a dry run shows which).",
                    dry_run=False,
                    paths=request.paths,
                    quiet=quiet,
                )
            given = set(collapse(accepted).to_send)
            # The plan's rows a chunk at a time: what it confirms that was not given, and what was given that it
            # does not confirm (the given paths are at most EFILE_MAX_PATHS; the plan may hold a million).
            extra, absent, confirmed = set(given), list[str](), 0
            try:
                async for rows in plan_rows(self.host.store, plan):
                    for seen in rows:
                        confirmed += 1
                        if seen.path in extra:
                            extra.discard(seen.path)
                        elif len(absent) < 3:
                            absent.append(seen.path)
            except LookupError:
                absent = absent or ["(the plan's rows were lost)"]
            if extra or absent or confirmed != len(given):
                message = (
                    f"the paths differ from the set the dry run confirmed ({plan.count} confirmed, "
                    f"{len(given)} given after removing duplicates and paths inside other given paths)"
                )
                if extra:
                    message += f"; not confirmed: {', '.join(map(repr, sorted(extra)[:3]))}"
                if absent:
                    message += f"; confirmed but not given: {', '.join(map(repr, sorted(absent)[:3]))}"
                await self._refuse(
                    "path_set_mismatch",
                    message + ". Pass the dry run's token alone (or exactly its "
                    "confirm_paths), or run a new dry run for the new set. Nothing was deleted.",
                    dry_run=False,
                    paths=request.paths,
                    quiet=quiet,
                    plan_id=plan.plan_id,
                )
        if request.select is not None and selection_key(request.select) != plan.select:
            await self._refuse(
                "select_mismatch",
                "this select differs from the one the dry run expanded: pass the "
                "token alone (or the same select), or run a new dry run. Nothing was deleted.",
                dry_run=False,
                quiet=quiet,
                plan_id=plan.plan_id,
            )

    # ------------------------------------------------------------------------------------ the person

    async def _question_text(self, plan: Plan, url: str | None) -> str:
        """The form's text, from the plan's rows read twice a chunk at a time (report.FormQuestion)."""
        form = FormQuestion()
        try:  # the rows as the token binds them, each unit checked: the person reads what would be sent
            async for rows in verified_units(self.host.store, plan):
                form.first(rows)
            async for rows in verified_units(self.host.store, plan):
                form.second(rows)
        except LookupError:
            await self._refuse(
                "invalid_token",
                "the plan's rows in the state store are lost or not what the token binds: nothing was deleted; run a "
                "new dry run.",
                dry_run=False,
                plan_id=plan.plan_id,
            )
        text = form.text(covered=len(plan.covered), now=plan.created_at or None, mode=plan.mode)
        if url is not None:
            text += f"\n\nEvery path, folder totals and what was refused: {url}"
        return text

    async def _page_url(self, plan: Plan) -> str | None:
        if self.pages is None:
            return None
        try:
            return await self.pages.url_for(plan.plan_id, plan.expires_at)
        except Exception:  # the page is one channel among others: its failure must not stop the decision
            log.exception("the review page of plan %s could not be prepared", plan.plan_id)
            return None

    async def question(self, request: RemovalRequest, session: str | None, *, first_round: bool = True) -> str | None:
        """The form's text when this call's client should ask the person now (the 2026-07-28 era asks before the
        tool body runs); None when it should not (token mode, a request refused anyway, a plan decided, or asked
        about already: in another session, or in this one by an earlier call, whose form went unanswered: the
        person decides on the page now). Marks the plan asked by `session`. The same text on every round: the
        SDK accepts an answer only to the question it asked.
        """
        host = self.host
        if host.read_only or self.confirm == "token":
            return None
        await host._ready()
        try:
            opened = await self._open(request, quiet=True)
        except GuardRefusal:
            return None  # the tool body refuses it with the precise reason (and audits it)
        plan = opened.plan
        state = await host.store.plan_state(plan.plan_id)
        if state.status not in ("open", "asked") or state.waits_in_other_session(session):
            return None
        if state.status == "asked" and first_round:
            return None  # asked once per session: an earlier call's form went unanswered
        url = await self._page_url(plan) if plan.count > FORM_PATHS else None
        # A big plan's form carries the page's address: the client that reads the form holds it too.
        marked = await host.store.mark_asked(plan.plan_id, plan.expires_at, session, url_to_client=url is not None)
        if marked.status != "asked" or marked.asked_by not in (None, session):
            return None
        try:
            return await self._question_text(plan, url)
        except GuardRefusal:  # rows lost or changed meanwhile: the execution refuses it with the reason
            return None

    async def _admit(self, opened: _Opened, asker: Asker, progress: Progress | None) -> _Admitted:
        """Who confirms this execution; redeemed under a lease when allowed, else a refusal (audited)."""
        plan, store, session = opened.plan, self.host.store, asker.session
        state = await store.plan_state(plan.plan_id)
        if state.waits_in_other_session(session) and plan.plan_id not in self._reshown:
            # The session that asked may be gone with its page (a restarted desktop app): the person gets the
            # page again, once per process, and decides there; this session is refused all the same.
            self._reshown.add(plan.plan_id)
            url = await self._page_url(plan)
            if url is not None:
                self._show(url)
        await self._refuse_by_state(plan, state, session)
        if state.status == "running":  # its lease ran out: the execution it stands for is resumed
            return await self._redeem(plan, session, state, token_alone=True)
        if state.status == "approved" or self.confirm == "token":
            return await self._redeem(plan, session, state, token_alone=self.confirm == "token")

        # The person decides: their form first, then their browser page (or the client opens it, URL mode).
        deadline = anyio.current_time() + self.confirm_timeout
        big = plan.count > FORM_PATHS
        url = await self._page_url(plan) if big or not asker.has_form else None
        shown = False
        where: list[str] = []
        if big and url is not None:
            shown = self._show(url)

        async def open_page_beside_the_form() -> None:
            nonlocal url, shown
            if not shown:
                url = url or await self._page_url(plan)
                shown = url is not None and self._show(url)

        if asker.has_form and (state.status == "open" or asker.answered):
            where.append("the confirmation form in their client")
            link = url if big else None  # a big plan's form carries the page's address: its client holds it too
            state = await self._mark_asked(plan, session, url_to_client=link is not None)
            text = await self._question_text(plan, link)
            answer = await self._ask_form(plan, asker, text, open_page_beside_the_form)
            if answer is None:  # decided elsewhere (the page, a terminal) while the form was up
                state = await store.plan_state(plan.plan_id)
            else:
                state = await self._record_form(plan, state, answer, session)
            if state.status in ("approved", "declined"):
                return await self._decided(plan, session, state)
        if url is None:
            url = await self._page_url(plan)
        if url is not None:
            # The person's own browser first: the address then goes to no client at all. URL mode (the client
            # opens it) where this machine has no browser to open, e.g. a server reached over HTTP.
            if not shown:
                shown = self._show(url)
            if shown:
                where.append("the page opened in their browser")
            remaining = deadline - anyio.current_time()
            if not shown and asker.has_url and remaining >= URL_MODE_MIN_SECONDS:
                # Recorded first: from now on a client holds the address, and the page may be approved by it.
                state = await store.mark_asked(plan.plan_id, plan.expires_at, session, url_to_client=True)
                if await asker.open_url(self._url_message(plan), url, remaining):
                    shown = True
                    where.append("the page their client opened")
        if not where and state.status == "open":
            # Nothing here reaches a person: a pipeline. auto: the token alone, as configured; human: refused.
            # (A plan already put to a person, by a form now dismissed, waits for their decision instead.)
            if self.confirm == "auto":
                return await self._redeem(plan, session, state, token_alone=True)
            await self._refuse_code("person_unreachable", plan)
        where.append("`efile-mcp approve` in a terminal")
        places = where[0] if len(where) == 1 else ", ".join(where[:-1]) + " or " + where[-1]
        state = await self._mark_asked(plan, session)
        state = await self._wait(plan, state, deadline, progress, places)
        if state.status in ("approved", "declined"):
            return await self._decided(plan, session, state)
        await self._refuse_by_state(plan, state, session)
        await self._refuse_code("awaiting_person", plan, where=places)
        raise AssertionError("unreachable")

    async def _ask_form(
        self, plan: Plan, asker: Asker, text: str, when_slow: Callable[[], Awaitable[None]]
    ) -> FormAnswer | None:
        """The form's answer; None when a decision from another channel landed in the store first. A form still
        unanswered after `form_grace` seconds may never have been drawn: `when_slow` opens the page beside it,
        and an approval there ends the wait at once."""
        answer: list[FormAnswer] = []

        async def slow() -> None:
            await anyio.sleep(self.form_grace)
            try:
                await when_slow()
            except EfileMcpError as exc:
                log.warning("the review page could not be opened beside the form: %s", exc)

        async def form(group: anyio.abc.TaskGroup) -> None:
            try:
                answer.append(await asker.ask(text, self.confirm_timeout))
            except Exception:  # whatever a client does with its form, it is no decision of the person's
                log.exception("the client's form failed")
                answer.append("no_answer")
            group.cancel_scope.cancel()

        async def watch(group: anyio.abc.TaskGroup) -> None:
            while True:
                await anyio.sleep(self.poll_seconds)
                try:
                    state = await self.host.store.plan_state(plan.plan_id)
                except EfileMcpError:
                    return  # the form still stands; the store is read again after it
                if not state.pending:
                    group.cancel_scope.cancel()
                    return

        async with anyio.create_task_group() as group:
            group.start_soon(form, group)
            group.start_soon(watch, group)
            group.start_soon(slow)
        return answer[0] if answer else None

    def _show(self, url: str) -> bool:
        assert self.pages is not None
        try:
            return bool(self.pages.show(url))
        except Exception:
            log.exception("the review page could not be opened")
            return False

    @staticmethod
    def _url_message(plan: Plan) -> str:
        verb = "move into the quarantine" if plan.mode == "quarantine" else "permanently delete"
        return f"An AI agent asks to {verb} {plan.count} path(s) on your SCNet storage: review and decide."

    async def _mark_asked(self, plan: Plan, session: str | None, *, url_to_client: bool = False) -> PlanState:
        state = await self.host.store.mark_asked(plan.plan_id, plan.expires_at, session, url_to_client=url_to_client)
        await self._refuse_by_state(plan, state, session)
        return state

    async def _record_form(self, plan: Plan, state: PlanState, answer: FormAnswer, session: str | None) -> PlanState:
        if answer == "no_answer":
            return state  # no decision: a client may dismiss a form it never drew; the page is next
        kind: Literal["approved", "declined"] = "approved" if answer == "approved" else "declined"
        decision = Decision(kind=kind, channel="client_form", at=self.host.clock())
        return await self.host.store.decide(plan.plan_id, plan.expires_at, decision, session)

    async def _wait(
        self, plan: Plan, state: PlanState, deadline: float, progress: Progress | None, where: str
    ) -> PlanState:
        """Poll the plan's state until a decision (from any channel) or the deadline; progress meanwhile."""
        started = anyio.current_time()
        total = max(0.0, deadline - started)
        while state.pending:
            now = anyio.current_time()
            if now >= deadline:
                break
            if progress is not None:
                await progress(round(now - started, 1), round(total, 1), f"waiting for the person's decision: {where}")
            await anyio.sleep(min(self.poll_seconds, deadline - now))
            state = await self.host.store.plan_state(plan.plan_id)
        return state

    async def _decided(self, plan: Plan, session: str | None, state: PlanState) -> _Admitted:
        if state.status == "declined":  # final in the store: every later call says so, nothing redeems it
            await self._refuse_code("person_declined", plan)
        return await self._redeem(plan, session, state, token_alone=False)

    async def _refuse_by_state(self, plan: Plan, state: PlanState, session: str | None) -> None:
        """The states in which this call can do nothing, each with its own words."""
        if state.status == "done":
            counts = ", ".join(f"{n} {status}" for status, n in sorted((state.outcome or {}).items()) if n)
            await self._refuse_code("already_executed", plan, outcome=f" ({counts})" if counts else "")
        if state.status == "declined":
            await self._refuse_code("person_declined", plan)
        if state.status == "spent":
            await self._refuse_code("reused", plan)
        if state.status == "running" and state.lease_until > self.host.clock():
            await self._refuse_code("running", plan)
        if state.waits_in_other_session(session):
            await self._refuse_code("other_session", plan)
        form_answer = state.decision is not None and state.decision.channel == "client_form"
        if state.status == "approved" and form_answer and state.decided_in not in (None, session):
            await self._refuse_code("other_session", plan)

    async def _is_purge(self, plan: Plan) -> bool:
        """A plan of paths inside a quarantine (a purge: permanent whatever was chosen); never mixed with others,
        so its first row tells."""
        try:
            async for rows in plan_rows(self.host.store, plan, 0, 1):
                return any(in_quarantine(seen.path) for seen in rows)
        except LookupError:
            pass
        return False

    async def _redeem(self, plan: Plan, session: str | None, state: PlanState, *, token_alone: bool) -> _Admitted:
        chosen = state.decision.mode if state.decision is not None else None
        purge = await self._is_purge(plan)
        if chosen == "quarantine" and plan.mode != "quarantine" and (purge or self.quarantine is None):
            # The person approved a removal this plan cannot be: never carry out another one in its place.
            await self.host.store.spend(plan.plan_id, plan.expires_at)
            await self._refuse_code("mode_impossible", plan)
        redemption = await self.host.store.redeem(
            plan.plan_id, plan.expires_at, session=session, token_alone=token_alone, lease=self.lease_seconds
        )
        if not redemption.won:
            await self._refuse_by_state(plan, redemption.state, session)
            if redemption.outcome == "waiting":  # someone asked the person meanwhile
                await self._refuse_code("awaiting_person", plan, where="`efile-mcp approve` in a terminal")
            await self._refuse_code("reused", plan)
        decision = redemption.state.decision
        confirmed_by: Channel = decision.channel if decision is not None else "token"
        if confirmed_by == "review_page" and redemption.state.url_to_client:
            confirmed_by = "client_form"  # the client was handed the page: the approval may be its own
        mode: RemoveMode = "quarantine" if plan.mode == "quarantine" else "delete"
        # The person may choose the restorable way for a plan made to delete; never the reverse.
        chose_quarantine = decision is not None and decision.mode == "quarantine" and self.quarantine is not None
        if chose_quarantine and not purge:
            mode = "quarantine"
        return _Admitted(redemption=redemption, confirmed_by=confirmed_by, mode=mode)

    # ------------------------------------------------------------------------------------ execute

    async def execute(
        self,
        request: RemovalRequest,
        asker: Asker,
        *,
        detail: Detail = "auto",
        progress: Progress | None = None,
    ) -> RemovePathsResult:
        host = self.host
        await host._ready()
        if host.read_only:
            raise GuardRefusal("read_only", REFUSALS["read_only"])
        opened = await self._open(request)
        admitted = await self._admit(opened, asker, progress)
        run_id = admitted.redemption.state.run_id or ""
        plan = opened.plan
        try:
            return await self._leased(plan, run_id, lambda: self._run(opened, admitted, detail, progress))
        except _NothingSent as stop:
            # Stopped before anything went out (the storage or the audit failed): the plan is as it was.
            with anyio.CancelScope(shield=True):
                try:
                    await host.store.release(plan.plan_id, plan.expires_at, run_id)
                except EfileMcpError as exc:  # then its lease runs out, and the next call resumes it
                    log.warning("plan %s could not be given back after a stop: %s", plan.plan_id, exc)
            raise stop.error from None

    async def _leased(self, plan: Plan, run_id: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` while renewing the plan's lease: another replica resumes it only if this process dies."""

        async def renew() -> None:
            while True:
                await anyio.sleep(self.lease_seconds / 3)
                try:
                    await self.host.store.renew(plan.plan_id, plan.expires_at, run_id, self.lease_seconds)
                except EfileMcpError as exc:
                    log.warning("the lease of plan %s could not be renewed: %s", plan.plan_id, exc)

        return await alongside(work, renew)

    async def _run(
        self, opened: _Opened, admitted: _Admitted, detail: Detail, progress: Progress | None
    ) -> RemovePathsResult:
        plan = opened.plan
        run = PlanRun(
            self,
            plan,
            opened.request,
            mode=admitted.mode,
            confirmed_by=admitted.confirmed_by,
            resumed=admitted.redemption.outcome == "resumed",
            detail=detail,
            progress=progress,
        )
        run_id = admitted.redemption.state.run_id or ""
        try:
            result, outcome = await run.run()
        except GuardRefusal:
            with anyio.CancelScope(shield=True):
                await self._finish(plan, run_id, dict(run.tally.counts), run.afterwards)
            raise
        with anyio.CancelScope(shield=True):
            await self._finish(plan, run_id, outcome, run.afterwards)
        not_previewed = None
        if plan.select is not None and not run.stopped:
            not_previewed = await run.not_previewed()
        lead = []
        if run.resumed:
            lead.append(
                "Resumed: an earlier execution of this plan was interrupted; what it had removed is reported "
                "missing, and only what was still there and unchanged was sent now."
            )
        if run.mode == "quarantine":
            lead.append(
                f"Quarantined, restorable with restore_paths(plan_id={plan.plan_id!r}) until it is purged; it "
                "still counts against the quota until then."
            )
        task_ids = list(run.task_ids)
        if run.task_count > len(task_ids):
            lead.append(
                f"get_task(plan_id) follows {len(task_ids)} of the {run.task_count} server tasks (those still at work "
                "when sent); every task id is in the audit log."
            )
        return result.model_copy(
            update={
                # Above 50 the ids are kept for get_task(plan_id); if they could not be kept, the first are here.
                "task_ids": task_ids[:ITEMS_LISTED_MAX]
                if run.task_count <= ITEMS_LISTED_MAX or run.afterwards
                else None,
                "task_count": run.task_count if run.task_count > ITEMS_LISTED_MAX else None,
                "not_previewed": not_previewed or None,
                "next_step": " ".join([*lead, *run.afterwards, run.next_step(result.summary, not_previewed)]),
            }
        )

    async def _finish(self, plan: Plan, run_id: str, outcome: dict[str, int], afterwards: list[str]) -> None:
        try:
            await self.host.store.finish(plan.plan_id, plan.expires_at, run_id, outcome)
        except EfileMcpError as exc:
            afterwards.append(f"the outcome could not be recorded in the state store ({store_trouble(exc)})")


def _mode_words(mode: str, purge: bool) -> str:
    if purge:
        return "Mode delete (a purge): these paths are inside the quarantine, so removing them is permanent."
    if mode == "quarantine":
        return (
            "Mode quarantine: the paths are moved into their root's .efile-quarantine folder and can be restored "
            "with restore_paths until they are purged; quarantined data still counts against your quota until it "
            "is purged."
        )
    return "Mode delete: the removal is permanent (nothing can restore it); it frees the quota it uses."
