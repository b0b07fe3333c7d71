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

import json
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import anyio
import anyio.abc

from ..client.remover import EfileRemover, RemovalRun, RemoveOutcome
from ..client.walk import Listings, TreeWalk, WalkLimits
from ..errors import AuditUnavailable, AuthError, EfileMcpError, StateStoreError
from ..models.results import ITEMS_LISTED_MAX, QuotaInfo, RemoveItem, RemovePathsResult, Selection
from .audit import AuditLog
from .insight import Matcher, find, incomplete_reason
from .inspect import Inspector
from .paths import MAX_PATH_BYTES, PathPolicy, PathRefusal, collapse, display
from .ports import Asker, Channel, Decision, FormAnswer, RemoveMode, ReviewPages
from .report import FORM_PATHS, Detail, item_of, question, shape, summarise
from .requests import (
    REFUSED_PATHS_AUDITED,
    TOOL,
    GuardRefusal,
    Progress,
    RemovalRequest,
    ancestors_in,
    selection_key,
    walk_progress,
)
from .sealing import ConfirmationRefused, ConfirmationSigner, Sealed, path_set_digest
from .seen import Plan, SeenPath, load_plan, save_plan
from .store import LEASE_SECONDS, PlanState, Redemption, StateStore

log = logging.getLogger("efile_mcp.guard")

T = TypeVar("T")
ConfirmMode = Literal["auto", "human", "token"]
LinksInside = Literal["refuse", "remove"]

#: The quarantine's folder name inside each allowed root (issue 14): `<root>/.efile-quarantine/<plan id>/...`.
QUARANTINE_DIR = ".efile-quarantine"
_TASK_IDS_IN_ERRORS = 50
#: How often a waiting call looks at the plan's state (a decision from the page or terminal lands there).
POLL_SECONDS = 0.5
#: A form unanswered this long may never have been drawn (Claude Desktop's chat): the page opens beside it.
FORM_GRACE_SECONDS = 15.0
#: URL-mode elicitation is tried only with at least this much of the wait left (the client must show it).
URL_MODE_MIN_SECONDS = 1.0
#: While a removal is being sent, what has a server task is written down this often: a replica that dies
#: mid-way leaves it for the one that resumes (queued tasks are followed, not sent again) and for get_task.
CHECKPOINT_SECONDS = 1.0
#: Task ids (by path) of a plan's executions are kept a day after the token expires, for get_task(plan_id).
TASKS_KEPT = 86400.0

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
        self, walk_id: str, prefix: str, tool: str, *, what: str = "resume value"
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
        self, plan_id: str, paths: Sequence[SeenPath], progress: Progress | None
    ) -> dict[str, RemoveItem]: ...


def in_quarantine(path: str) -> bool:
    """A quarantine folder or inside one: removing it is a purge, permanent whatever the mode."""
    return QUARANTINE_DIR in path.split("/")


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
            paths, mode = state["p"], state["m"]
            select = Selection.model_validate(state["s"]) if state["s"] is not None else None
            walks = {path: TreeWalk.from_json(walk) for path, walk in state["w"].items()}
        if mode == "quarantine" and self.quarantine is None:
            await self._refuse("quarantine_unavailable", REFUSALS["quarantine_unavailable"], dry_run=True)
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
        items: dict[str, RemoveItem] = {p: RemoveItem(path=p, status="refused", reason=r) for p, r in refused.items()}
        for path in to_check:
            if path in inspection.seen:
                items[path] = item_of(inspection.seen[path])
            elif path in inspection.refused:
                items[path] = RemoveItem(path=path, status="refused", reason=inspection.refused[path])
            else:
                items[path] = RemoveItem(path=path, status="missing", reason=inspection.missing.get(path))
        for path, outer in collapsed.covered.items():
            items[path] = RemoveItem(
                path=path,
                status=items[outer].status,
                reason=f"inside {display(outer)}, which this call removes; not sent separately",
            )
        ordered = [items[p] for p in distinct if p in items]
        removable = [inspection.seen[p] for p in to_check if p in inspection.seen]
        covered = [p for p, outer in collapsed.covered.items() if outer in inspection.seen]
        summary = summarise(
            [i for i in ordered if i.path not in collapsed.covered],
            requested=requested,
            covered=len(collapsed.covered) + matched_covered,
            counted=removable,
        )
        exceptions = [i for i in ordered if i.status != "would_remove"]
        plan_id = secrets.token_hex(12)
        now = host.clock()
        token = expires_iso = None
        if removable and resume_id is None:
            plan = Plan(
                plan_id=plan_id,
                expires_at=float(int(now + host.signer.ttl)),
                paths=removable,
                select=selection_key(select) if select is not None else None,
                covered=covered,
                created_at=now,
                mode=plan_mode,
                exceptions=[[i.path, i.status, i.reason or ""] for i in exceptions],
                summary=summary.model_dump(exclude_none=True),
                quota=_quota_after(await host.quota_now(), removable, plan_mode),
            )
            await save_plan(host.store, plan)  # rows in chunks, then the small header
            token = host.signer.seal(plan_id, plan.path_set, plan.expires_at, total_size=summary.total_size)
            expires_iso = host.signer.unseal(token).expires_at_iso
        await host.audit.write(
            "plan",
            tool=TOOL,
            dry_run=True,
            decision="planned" if token else "nothing_to_remove",
            plan_id=plan_id if token else None,
            mode=plan_mode,
            select=selection_key(select) if select else None,
            removable=[s.path for s in removable],
            summary=summary.model_dump(exclude_none=True),
            exceptions=[_audit_item(i) for i in exceptions][:REFUSED_PATHS_AUDITED],
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
            how = (
                "call remove_paths with dry_run=false and confirmation_token set to this token (paths and select "
                f"may be left out; the token stands for exactly this plan), before {expires_iso}."
            )
            next_step = (
                f"{_mode_words(plan_mode, purge)} Show the person what would be removed ({summary.would_remove} "
                f"path(s), {'at least ' if summary.lower_bound else ''}{summary.total_size} bytes, "
                f"{summary.file_count} files). To go ahead, {how}{self._who_confirms()}"
            )
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
        listed = ordered if select is None else [i for i in ordered if i.path not in collapsed.covered]
        return shape(result, listed, detail)

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
        problem = self._selection_root_problem(root)
        if problem:
            await self._refuse("select_path", problem, dry_run=True, paths=[root])
        if root not in host.policy.allowed_roots:
            inspection = await Inspector(listings, host.policy, limits).check([root], walk_folders=False)
            seen = inspection.seen.get(root)
            if seen is None or seen.kind != "directory":
                reason = inspection.refused.get(root) or inspection.missing.get(root) or "it is not a folder"
                await self._refuse(
                    "select_path",
                    f"select.path {display(root)} cannot be searched: {reason}",
                    dry_run=True,
                    paths=[root],
                )
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
        if not matches:
            note = (note + " " if note else "") + "The selection matches nothing."
        return list(collapsed.to_send), len(collapsed.covered), note

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
        loaded = await load_plan(host.store, sealed.plan_id)
        if loaded is None:
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
        assert loaded is not None
        plan = loaded
        if path_set_digest(plan.path_set) != sealed.digest:
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
            confirmed = set(plan.path_set)
            if given != confirmed:
                extra, absent = sorted(given - confirmed)[:3], sorted(confirmed - given)[:3]
                message = (
                    f"the paths differ from the set the dry run confirmed ({len(confirmed)} confirmed, "
                    f"{len(given)} given after removing duplicates and paths inside other given paths)"
                )
                if extra:
                    message += f"; not confirmed: {', '.join(map(repr, extra))}"
                if absent:
                    message += f"; confirmed but not given: {', '.join(map(repr, absent))}"
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

    def _question_text(self, plan: Plan, url: str | None) -> str:
        text = question(plan.paths, covered=len(plan.covered), now=plan.created_at or None, mode=plan.mode)
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
        url = await self._page_url(plan) if len(plan.paths) > FORM_PATHS else None
        # A big plan's form carries the page's address: the client that reads the form holds it too.
        marked = await host.store.mark_asked(plan.plan_id, plan.expires_at, session, url_to_client=url is not None)
        if marked.status != "asked" or marked.asked_by not in (None, session):
            return None
        return self._question_text(plan, url)

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
        big = len(plan.paths) > FORM_PATHS
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
            text = self._question_text(plan, link)
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
        return f"An AI agent asks to {verb} {len(plan.paths)} path(s) on your SCNet storage: review and decide."

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

    async def _redeem(self, plan: Plan, session: str | None, state: PlanState, *, token_alone: bool) -> _Admitted:
        chosen = state.decision.mode if state.decision is not None else None
        purge = any(in_quarantine(p) for p in plan.path_set)
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
        if chose_quarantine and not any(in_quarantine(p) for p in plan.path_set):
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

        return await _alongside(work, renew)

    async def _run(
        self, opened: _Opened, admitted: _Admitted, detail: Detail, progress: Progress | None
    ) -> RemovePathsResult:
        host, plan, request = self.host, opened.plan, opened.request
        resumed = admitted.redemption.outcome == "resumed"
        mode = admitted.mode
        confirmed_by = admitted.confirmed_by
        run_id = admitted.redemption.state.run_id or ""

        # The policy as it is now (a name protected or a root added since the dry run), then what is there now:
        # the same objects, folders read whole again (their contents may have changed without their own mtime).
        # A resumed run starts here too: what the interrupted one removed is gone, what it did not is still as seen.
        try:  # nothing goes out before the intent is on disk: a failure up to there gives the plan back
            _, refused_now, _ = self._screen(plan.path_set)
            listings = host._listings()
            checkable = [p for p in plan.path_set if p not in refused_now]
            # The re-check reads every planned folder whole in this one call, however many calls its dry run took:
            # no entry budget (a walk's memory does not grow with its entries), only the time budget (H4).
            whole = WalkLimits(1 << 62, host._walk_limits().deadline)
            now_seen = await self._inspector(listings, plan.mode, whole).check(checkable, walk_folders=True)
            items: dict[str, RemoveItem] = {}
            to_send: list[SeenPath] = []
            for seen in plan.paths:
                current = now_seen.seen.get(seen.path)
                if seen.path in refused_now:
                    items[seen.path] = RemoveItem(path=seen.path, status="refused", reason=refused_now[seen.path])
                elif seen.path in now_seen.missing:
                    reason = "already absent" + (
                        " (the interrupted execution most likely removed it)" if resumed else ""
                    )
                    items[seen.path] = RemoveItem(path=seen.path, status="missing", reason=reason)
                elif current is None:
                    items[seen.path] = RemoveItem(
                        path=seen.path,
                        status="changed",
                        reason=_changed(now_seen.refused.get(seen.path, "it can no longer be checked")),
                    )
                elif _identity(current) != _identity(seen):
                    items[seen.path] = RemoveItem(
                        path=seen.path, status="changed", reason=_changed(_difference(seen, current))
                    )
                else:
                    to_send.append(seen)
            sent_before = await self._sent_before(plan) if resumed else {}
            if sent_before:
                to_send = await self._still_queued(plan, to_send, sent_before, items)
            if resumed:
                await _audit_quietly(
                    host.audit,
                    "reconciled",
                    tool=TOOL,
                    plan_id=plan.plan_id,
                    items=[_audit_item(i) for i in items.values()],
                    still_there=[s.path for s in to_send],
                )
            await host.audit.write(  # fails closed: AuditUnavailable here means nothing is sent
                "intent",
                tool=TOOL,
                plan_id=plan.plan_id,
                confirmed_by=confirmed_by,
                mode=mode,
                resumed=resumed or None,
                paths=[s.path for s in to_send],
                changed=[p for p, i in items.items() if i.status == "changed"],
            )
        except EfileMcpError as exc:
            raise _NothingSent(exc) from exc
        if mode == "quarantine":
            result = await self._send_to_quarantine(plan, to_send, items, progress)
        else:
            result = await self._send_delete(plan, request, to_send, items)
        ordered, summary, task_ids, afterwards, error, run = result
        outcome: dict[str, int] = dict(Counter(str(i.status) for i in ordered))
        with anyio.CancelScope(shield=True):
            try:
                await host.store.finish(plan.plan_id, plan.expires_at, run_id, outcome)
            except EfileMcpError as exc:
                afterwards.append(f"the outcome could not be recorded in the state store ({_store_trouble(exc)})")
            try:
                await host.audit.write(
                    "execution",
                    tool=TOOL,
                    dry_run=False,
                    decision="executed",
                    confirmed_by=confirmed_by,
                    mode=mode,
                    resumed=resumed or None,
                    plan_id=plan.plan_id,
                    requests_sent=run.requests_sent if run is not None else None,
                    task_ids=task_ids,
                    items=[_audit_item(i) for i in ordered],
                    summary=summary.model_dump(exclude_none=True),
                    error=str(error) if error else None,
                )
            except AuditUnavailable as exc:
                log.error("the execution of plan %s was sent but its audit record failed: %s", plan.plan_id, exc)
                afterwards.append(f"WARNING: the removal was sent, but its audit record could not be written ({exc})")
        if error is not None and run is not None:
            raise GuardRefusal("auth", _auth_stopped(error, run, task_ids, host.audit))
        not_previewed = None
        if plan.select is not None and error is None:
            not_previewed = await self._not_previewed(plan, listings)
        lead = []
        if resumed:
            lead.append(
                "Resumed: an earlier execution of this plan was interrupted; what it had removed is reported "
                "missing, and only what was still there and unchanged was sent now."
            )
        if mode == "quarantine":
            lead.append(
                f"Quarantined, restorable with restore_paths(plan_id={plan.plan_id!r}) until it is purged; it "
                "still counts against the quota until then."
            )
        return shape(
            RemovePathsResult(
                dry_run=False,
                plan_id=plan.plan_id,
                summary=summary,
                # Above 50 the ids are kept for get_task(plan_id); if they could not be kept, they are all here.
                task_ids=task_ids if len(task_ids) <= ITEMS_LISTED_MAX or afterwards else None,
                task_count=len(task_ids) if len(task_ids) > ITEMS_LISTED_MAX else None,
                not_previewed=not_previewed or None,
                next_step=" ".join(
                    [
                        *lead,
                        *afterwards,
                        _next_step_after_execution(summary, plan.plan_id, len(task_ids), not_previewed),
                    ]
                ),
            ),
            ordered,
            detail,
        )

    async def _send_to_quarantine(
        self, plan: Plan, to_send: list[SeenPath], items: dict[str, RemoveItem], progress: Progress | None
    ) -> tuple[list[RemoveItem], Any, list[str], list[str], EfileMcpError | None, RemovalRun | None]:
        assert self.quarantine is not None
        if to_send:
            moved = await self.quarantine.send(plan.plan_id, to_send, progress)
            for seen in to_send:
                items[seen.path] = moved.get(seen.path) or RemoveItem(
                    path=seen.path, status="failed", error_code="not_sent", reason="the quarantine reported nothing"
                )
        ordered = [items[s.path] for s in plan.paths]
        by_path = {s.path: s for s in plan.paths}
        done = [by_path[i.path] for i in ordered if i.status in ("removed", "queued", "quarantined")]
        summary = summarise(
            ordered, requested=len(plan.paths) + len(plan.covered), covered=len(plan.covered), counted=done
        )
        return ordered, summary, [], [], None, None

    async def _send_delete(
        self, plan: Plan, request: RemovalRequest, to_send: list[SeenPath], items: dict[str, RemoveItem]
    ) -> tuple[list[RemoveItem], Any, list[str], list[str], EfileMcpError | None, RemovalRun | None]:
        host = self.host
        run = RemovalRun(paths=tuple(s.path for s in to_send))
        afterwards: list[str] = []
        error: EfileMcpError | None = None
        interrupted: str | None = None
        sent_before = {p: i.task_id for p, i in items.items() if i.task_id}  # queued by an interrupted run

        def sent_now() -> dict[str, str]:
            tasks = {p: o.task.task_id for p, o in run.outcomes.items() if o.task is not None}
            return {**sent_before, **tasks}

        async def checkpoint() -> None:
            kept = len(sent_before)
            while True:
                await anyio.sleep(CHECKPOINT_SECONDS)
                sent = sent_now()
                if len(sent) != kept:
                    try:
                        await self._keep_tasks(plan, sent)
                        kept = len(sent)
                    except EfileMcpError as exc:
                        log.warning("the tasks of plan %s could not be written down: %s", plan.plan_id, exc)

        async def send() -> None:
            await host._remover.remove(run)

        try:
            if to_send:
                await _alongside(send, checkpoint)
        except AuthError as exc:
            error = exc
        except BaseException as exc:
            interrupted = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else type(exc).__name__
            raise
        finally:
            run.settle_unfinished()
            by_path = {s.path: s for s in plan.paths}
            for seen in to_send:
                items[seen.path] = _item_from_outcome(run.outcomes[seen.path], seen)
            ordered = [items[s.path] for s in plan.paths]
            task_ids = [i.task_id for i in ordered if i.task_id]
            done = [by_path[i.path] for i in ordered if i.status in ("removed", "queued")]
            requested, covered_items = len(plan.paths) + len(plan.covered), _covered_items(request, items)
            if request.paths is not None:
                requested = len(request.paths)
            summary = summarise(
                ordered,
                requested=requested,
                covered=len(covered_items) if request.paths is not None else len(plan.covered),
                counted=done,
            )
            ordered += covered_items
            # What was sent is sent: a record that cannot be kept now must not hide the per-path answer.
            with anyio.CancelScope(shield=True):
                if task_ids:
                    try:
                        await self._keep_tasks(plan, sent_now())
                    except EfileMcpError as exc:
                        afterwards.append(
                            f"the task ids could not be kept for get_task by plan_id ({_store_trouble(exc)}); "
                            "follow the task_ids of this answer"
                        )
                if interrupted:
                    await _audit_quietly(
                        host.audit,
                        "execution",
                        tool=TOOL,
                        dry_run=False,
                        decision=f"interrupted: {interrupted}",
                        plan_id=plan.plan_id,
                        requests_sent=run.requests_sent,
                        task_ids=task_ids,
                        items=[_audit_item(i) for i in ordered],
                    )
        return ordered, summary, task_ids, afterwards, error, run

    async def _keep_tasks(self, plan: Plan, sent: dict[str, str]) -> None:
        """The plan's server tasks so far: by path (a resumed run follows them) and as get_task(plan_id) reads them."""
        store, until = self.host.store, plan.expires_at + TASKS_KEPT
        await store.save_plan("sent-" + plan.plan_id, json.dumps(sent).encode(), until)
        await store.save_plan("run-" + plan.plan_id, json.dumps(list(dict.fromkeys(sent.values()))).encode(), until)

    async def _sent_before(self, plan: Plan) -> dict[str, str]:
        data = await self.host.store.load_plan("sent-" + plan.plan_id)
        return {str(p): str(t) for p, t in json.loads(data).items()} if data else {}

    async def _still_queued(
        self, plan: Plan, to_send: list[SeenPath], sent_before: dict[str, str], items: dict[str, RemoveItem]
    ) -> list[SeenPath]:
        """Paths to which an interrupted run gave a server task that is still at work are followed (queued, with
        its task id), not sent again: whether still as seen or already changing (a folder being emptied)."""
        candidates = [s for s in plan.paths if s.path in sent_before]
        in_play = [s for s in candidates if s in to_send or items.get(s.path, _NO_ITEM).status == "changed"]
        states = await self.host.task_states([sent_before[s.path] for s in in_play]) if in_play else {}
        at_work = set()
        for seen in in_play:
            task_id = sent_before[seen.path]
            status = states.get(task_id)
            if status in ("waiting", "processing"):
                at_work.add(seen.path)
                items[seen.path] = item_of(
                    seen,
                    "queued",
                    task_id=task_id,
                    task_status=status,
                    reason="the interrupted execution's server task is removing it; follow it with get_task",
                )
        return [s for s in to_send if s.path not in at_work]

    async def _not_previewed(self, plan: Plan, listings: Listings) -> int:
        """Matches of the plan's selection now present that the dry run did not show: left alone, and counted.
        `listings` is the re-check's: the folders it read whole are not listed again (H4)."""
        host = self.host
        select = Selection.model_validate(plan.select)
        try:
            matches, _ = await find(listings, select, Matcher(select, host.clock()), limits=host._walk_limits())
        except EfileMcpError:
            return 0
        planned = set(plan.path_set) | set(plan.covered)
        return sum(
            1
            for m in matches
            if m.path not in planned and not any(m.path.startswith(p + "/") for p in ancestors_in(m.path, planned))
        )


async def _alongside(work: Callable[[], Awaitable[T]], background: Callable[[], Coroutine[Any, Any, None]]) -> T:
    """`work`'s result while `background` runs beside it (stopped when work ends); work's exception as it is."""
    done: list[T] = []
    failed: list[BaseException] = []
    async with anyio.create_task_group() as group:
        group.start_soon(background)
        try:
            done.append(await work())
        except BaseException as exc:  # re-raised below, outside the group (not as an ExceptionGroup)
            failed.append(exc)
        finally:
            group.cancel_scope.cancel()
    if failed:
        raise failed[0]
    return done[0]


_NO_ITEM = RemoveItem(path="", status="missing")


class _NothingSent(Exception):
    def __init__(self, error: EfileMcpError) -> None:
        super().__init__(str(error))
        self.error = error


def _store_trouble(exc: EfileMcpError) -> str:
    """A store failure after sending, in a few words: the details (a Redis error's text) go to the log."""
    if isinstance(exc, StateStoreError):
        log.warning("the state store failed after a removal was sent: %s", exc)
        return "the state store is unreachable"
    return str(exc)


async def _audit_quietly(audit: AuditLog, event: str, **fields: Any) -> None:
    try:
        await audit.write(event, **fields)
    except AuditUnavailable as exc:
        log.error("audit record %s failed: %s", event, exc)


def _quota_after(quota: Sequence[QuotaInfo], removable: Sequence[SeenPath], mode: str) -> list[dict[str, Any]]:
    """Each quota entry before -> after the plan: a deletion frees what it removes below the entry's path;
    a quarantine frees nothing until it is purged."""
    rows = []
    for entry in quota:
        prefix = entry.path.rstrip("/") + "/"
        freed = sum(s.size for s in removable if not entry.path or s.path.startswith(prefix))
        after = entry.used_bytes if mode == "quarantine" else max(0, entry.used_bytes - freed)
        rows.append(
            {"path": entry.path, "limit_bytes": entry.limit_bytes, "used_bytes": entry.used_bytes, "after_bytes": after}
        )
    return rows


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


def _covered_items(request: RemovalRequest, items: dict[str, RemoveItem]) -> list[RemoveItem]:
    """Paths the execution names inside a folder of the plan: they share the folder's fate, not sent themselves."""
    if request.paths is None:
        return []
    collapsed = collapse(dict.fromkeys(request.paths))
    return [
        items[outer].model_copy(
            update={
                "path": path,
                "reason": f"inside {display(outer)}, which this call removes; not sent separately",
                "type": None,
                "size": None,
                "file_count": None,
                "newest_modified": None,
                "task_id": None,
            }
        )
        for path, outer in collapsed.covered.items()
        if outer in items
    ]


def _changed(what: str) -> str:
    return f"it changed since the dry run ({what}); not sent. Run a new dry run to see it as it is now."


def _identity(seen: SeenPath) -> tuple[object, ...]:
    """What must be as the dry run saw it: type and own mtime; a file's size; a folder's whole tree."""
    if seen.kind == "directory":
        return (seen.kind, seen.mtime, seen.size, seen.file_count, seen.newest, seen.fingerprint)
    return (seen.kind, seen.mtime, seen.listed_size)


def _difference(before: SeenPath, now: SeenPath) -> str:
    if before.kind != now.kind:
        return f"was a {before.kind}, is now a {now.kind}"
    if before.kind != "directory" and before.listed_size != now.listed_size:
        return f"size {before.listed_size} B, now {now.listed_size} B"
    if before.kind == "directory" and (before.size, before.file_count) != (now.size, now.file_count):
        return f"it held {before.file_count} files, {before.size} B; now {now.file_count} files, {now.size} B"
    if before.kind == "directory" and before.newest != now.newest:
        return "something inside it was modified"
    if before.kind == "directory" and before.fingerprint != now.fingerprint:
        return "what it holds is not what was previewed (names or entries differ, with the same sizes and times)"
    return "its modification time changed"


def _item_from_outcome(outcome: RemoveOutcome, seen: SeenPath) -> RemoveItem:
    path = outcome.path
    sized: dict[str, Any] = {"type": seen.kind, "size": seen.size}
    if outcome.kind == "missing":
        return RemoveItem(path=path, status="missing", reason=outcome.message, error_code=outcome.error_code)
    if outcome.kind == "verified_absent":
        return RemoveItem(path=path, status="removed", reason=outcome.message, **sized)
    if outcome.kind == "failed":
        return RemoveItem(path=path, status="failed", reason=outcome.message, error_code=outcome.error_code)
    if outcome.kind == "unknown":
        return RemoveItem(
            path=path,
            status="failed",
            error_code=f"outcome_unknown:{outcome.error_code}" if outcome.error_code else "outcome_unknown",
            reason=f"outcome unknown: {outcome.message}. Run a dry run on it to see whether it is still there.",
        )
    if outcome.kind == "not_sent":
        return RemoveItem(path=path, status="failed", error_code="not_sent", reason=f"not sent: {outcome.message}")
    task = outcome.task
    assert task is not None
    common: dict[str, Any] = {"path": path, "task_id": task.task_id, "task_status": task.status}
    if task.status == "complete":
        return RemoveItem(status="removed", **common, **sized)
    if task.status in ("waiting", "processing"):
        return RemoveItem(
            status="queued", reason="a server task is removing it; follow it with get_task", **common, **sized
        )
    if task.error_code == "911020":
        return RemoveItem(status="missing", reason="already absent", error_code=task.error_code, **common)
    reason = task.error_msg or ("cancelled" if task.status == "cancel" else "the server reported a failure")
    return RemoveItem(status="failed", reason=reason, error_code=task.error_code, **common)


def _next_step_after_execution(summary: Any, plan_id: str, tasks: int, not_previewed: int | None) -> str:
    steps = []
    if summary.queued:
        how = "task_ids" if tasks <= ITEMS_LISTED_MAX else f"plan_id={plan_id!r}"
        steps.append(f"{summary.queued} path(s) are queued: call get_task with {how} and wait_seconds to follow them")
    if summary.failed:
        steps.append(f"{summary.failed} path(s) failed: see each item's reason")
    if summary.changed:
        steps.append(f"{summary.changed} path(s) changed since the dry run and were not sent: dry-run them again")
    if not_previewed:
        steps.append(
            f"{not_previewed} path(s) now match the selection that the dry run did not show; they were not "
            "removed (run a new dry run to see them)"
        )
    if not steps:
        return "Done: every confirmed path is removed or was already absent."
    return "; ".join(steps) + "."


def _auth_stopped(error: EfileMcpError, run: RemovalRun, task_ids: list[str], audit: AuditLog) -> str:
    kinds = Counter(outcome.kind for outcome in run.outcomes.values())
    shown = task_ids[:_TASK_IDS_IN_ERRORS]
    return (
        f"{error} The removal stopped: {kinds['submitted']} path(s) had already been submitted"
        + (
            f" (task ids: {', '.join(shown)}{' …' if len(task_ids) > len(shown) else ''}; follow them with get_task)"
            if task_ids
            else ""
        )
        + f", {kinds['not_sent']} were not sent"
        + (f", {kinds['unknown']} have an unknown outcome (an answer was lost)" if kinds["unknown"] else "")
        + (
            f", {kinds['missing'] + kinds['verified_absent']} were already absent"
            if kinds["missing"] + kinds["verified_absent"]
            else ""
        )
        + (f", {kinds['failed']} failed" if kinds["failed"] else "")
        + f". Every path's state is in the audit log ({audit.path}). Dry-run again after fixing the token."
    )


def _audit_item(item: RemoveItem) -> dict[str, object]:
    record: dict[str, object] = {"path": item.path[:MAX_PATH_BYTES], "status": item.status}
    if item.task_id:
        record["task_id"] = item.task_id
    if item.error_code:
        record["error_code"] = item.error_code
    if item.status in ("refused", "failed", "changed") and item.reason:
        record["reason"] = item.reason[:300]
    return record
