"""Dry run and execution: the guard's destructive half (a mixin of `Guard`, which tools talk to).

dry_run(paths | select)  policy -> the real objects (links, folders' contents) -> Plan -> store -> token
question(request)        the person's form for a valid request (marks the token "asked")
execute(request)         token -> stored plan -> redeemed once (store) -> listed again -> changed paths
                         set aside -> audit intent (fsync, fail closed) -> remove -> audit
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ..client.removal import EfileRemover, RemovalRun, RemoveOutcome
from ..client.walk import Listings, WalkLimits
from ..errors import AuditUnavailable, AuthError, EfileMcpError
from ..models.results import (
    ITEMS_LISTED_MAX,
    RemoveItem,
    RemovePathsResult,
    Selection,
)
from .audit import AuditLog
from .insight import Matcher, find, incomplete_reason
from .inspect import Inspector
from .paths import MAX_PATH_BYTES, PathPolicy, PathRefusal, collapse, display
from .ports import Decision
from .report import Detail, item_of, question, shape, summarise
from .seen import Plan, SeenPath

if TYPE_CHECKING:
    from .store import StateStore
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
from .tokens import ConfirmationRefused, ConfirmationSigner, path_set_digest

log = logging.getLogger("efile_mcp.guard")

_TASK_IDS_IN_ERRORS = 50


class RemovalSteps:
    """The removal steps; `Guard` provides the state they use (declared here for the type checker)."""

    policy: PathPolicy
    signer: ConfirmationSigner
    store: StateStore
    audit: AuditLog
    max_paths: int
    read_only: bool
    clock: Callable[[], float]
    _remover: EfileRemover

    def _listings(self, *, keep: bool = True) -> Listings:
        raise NotImplementedError

    def _walk_limits(self, max_entries: int | None = None) -> WalkLimits:
        raise NotImplementedError

    async def _ready(self) -> None:
        raise NotImplementedError

    async def _refuse(
        self, code: str, message: str, *, dry_run: bool, paths: Sequence[str] = (), quiet: bool = False, **extra: Any
    ) -> None:
        """Audit the refusal (unless `quiet`: only looking, the call that acts will audit it) and raise it."""
        if quiet:
            raise GuardRefusal(code, message)
        await self.audit.write(
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

    # ------------------------------------------------------------------ dry run

    def _screen(self, paths: Sequence[str]) -> tuple[list[str], dict[str, str], list[str]]:
        """Policy (no I/O): distinct paths, refusals by path, and the accepted ones.

        A folder named together with a protected path inside it would take that path with it: the request
        itself says the protected path matters, so the folder is refused too, however the inner path is spelled.
        """
        distinct = list(dict.fromkeys(paths))
        refused: dict[str, str] = {}
        accepted: dict[str, None] = {}
        protected_inner: list[tuple[str, str]] = []
        for path in distinct:
            verdict = self.policy.check(path)
            if isinstance(verdict, PathRefusal):
                refused[path] = verdict.message
                if isinstance(path, str) and self.policy.protected_component(path):
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
        if count > self.max_paths:
            return (
                f"{what} {count} paths; the limit is {self.max_paths} per call (EFILE_MAX_PATHS). Nothing was "
                "done. Split the request, narrow the selection, or remove a common parent folder instead."
            )
        return None

    async def dry_run(
        self,
        paths: Sequence[str] | None,
        select: Selection | None,
        *,
        detail: Detail = "auto",
        progress: Progress | None = None,
    ) -> RemovePathsResult:
        await self._ready()
        if self.read_only:
            raise GuardRefusal("read_only", "efile-mcp runs read-only (EFILE_READ_ONLY): removal is disabled.")
        listings = self._listings()
        budget = self._walk_limits()
        not_found_note: str | None = None
        if select is not None:
            named, matched_covered, select_note = await self._expand(select, listings, progress)
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
        collapsed = collapse(accepted)
        to_check = list(collapsed.to_send)
        if select is not None and (why := self._bound(len(to_check), "the selection matches")) is not None:
            await self._refuse("too_many_paths", why, dry_run=True)
        inspection = await Inspector(listings, self.policy, budget).check(to_check, walk_folders=True)
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
        plan_id = secrets.token_hex(12)
        now = self.clock()
        token = expires_iso = None
        if removable:
            plan = Plan(
                plan_id=plan_id,
                expires_at=float(int(now + self.signer.ttl)),
                paths=removable,
                select=selection_key(select) if select is not None else None,
                covered=covered,
                created_at=now,
            )
            await self.store.save_plan(plan_id, plan.to_bytes(), plan.expires_at)
            token = self.signer.seal(plan_id, plan.path_set, plan.expires_at, total_size=summary.total_size)
            expires_iso = self.signer.unseal(token).expires_at_iso
        await self.audit.write(
            "plan",
            tool=TOOL,
            dry_run=True,
            decision="planned" if token else "nothing_to_remove",
            plan_id=plan_id if token else None,
            select=selection_key(select) if select else None,
            removable=[s.path for s in removable],
            summary=summary.model_dump(exclude_none=True),
            exceptions=[_audit_item(i) for i in ordered if i.status != "would_remove"][:REFUSED_PATHS_AUDITED],
        )
        if token is None:
            next_step = "Nothing here can be removed; see each item's status and reason."
            if not_found_note:
                next_step = not_found_note + " " + next_step
        else:
            how = (
                "call remove_paths with dry_run=false and confirmation_token set to this token (paths and select "
                f"may be left out; the token stands for exactly this plan), before {expires_iso}. It works once."
            )
            next_step = (
                f"Show the person what would be removed ({summary.would_remove} path(s), "
                f"{'at least ' if summary.lower_bound else ''}{summary.total_size} bytes, "
                f"{summary.file_count} files). To delete them, {how}"
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
        )
        listed = ordered if select is None else [i for i in ordered if i.path not in collapsed.covered]
        return shape(result, listed, detail)

    async def _expand(
        self, select: Selection, listings: Listings, progress: Progress | None
    ) -> tuple[list[str], int, str | None]:
        """A selection -> the matching paths (a match inside another match is covered), walking below select.path."""
        root = select.path
        problem = self._selection_root_problem(root)
        if problem:
            await self._refuse("select_path", problem, dry_run=True, paths=[root])
        if root not in self.policy.allowed_roots:
            inspection = await Inspector(listings, self.policy, self._walk_limits()).check([root], walk_folders=False)
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
            listings,
            select,
            Matcher(select, self.clock()),
            progress=walk_progress(progress),
            limits=self._walk_limits(),
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
        if root in self.policy.allowed_roots:
            return None
        verdict = self.policy.check(root)
        if isinstance(verdict, PathRefusal):
            return f"select.path is not searchable for removal: {verdict.message}"
        return None

    # ------------------------------------------------------------------ execution

    async def _plan_for(self, request: RemovalRequest, *, quiet: bool = False) -> tuple[Plan, str]:
        """The stored plan a request names, if the token is genuine and the request matches it. Raises GuardRefusal.

        `quiet`: the person's form only looks; the execution that follows refuses (and audits) for real.
        """
        try:
            sealed = self.signer.unseal(request.token)
        except ConfirmationRefused as exc:
            await self._refuse(exc.code, str(exc), dry_run=False, paths=request.paths or (), quiet=quiet)
            raise AssertionError("unreachable") from None
        data = await self.store.load_plan(sealed.plan_id)
        if data is None:
            await self._refuse(
                "unknown_plan",
                "the plan behind this confirmation token is no longer known (it expired "
                "or was made by a server that does not share this one's state store): run remove_paths "
                "with dry_run=true again.",
                dry_run=False,
                quiet=quiet,
                plan_id=sealed.plan_id,
            )
        assert data is not None
        plan = Plan.from_bytes(data)
        if path_set_digest(plan.path_set) != sealed.digest:
            await self._refuse(
                "invalid_token",
                "the confirmation token does not match its plan: run a new dry run.",
                dry_run=False,
                quiet=quiet,
                plan_id=sealed.plan_id,
            )
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
        return plan, sealed.expires_at_iso

    async def question(self, request: RemovalRequest) -> str | None:
        """The person's form for a request that would pass right now; None when it will be refused anyway.

        Marks the token "asked": from now on only the person's yes can execute it.
        """
        if self.read_only:
            return None
        await self._ready()
        try:
            plan, _ = await self._plan_for(request, quiet=True)
        except GuardRefusal:
            return None  # the tool body refuses it with the precise reason (and audits it)
        if (await self.store.mark_asked(plan.plan_id, plan.expires_at)).status != "asked":
            return None  # already spent: refused by the body as reused
        return question(plan.paths, covered=len(plan.covered), now=plan.created_at or None)

    async def refuse_unconfirmed(self, request: RemovalRequest, code: str, message: str, *, spend: bool) -> None:
        """The person did not confirm: audit it, and spend the token so it cannot be retried."""
        plan_id = None
        if spend:
            try:
                sealed = self.signer.unseal(request.token)
            except ConfirmationRefused:
                pass
            else:
                plan_id = sealed.plan_id
                await self.store.spend(sealed.plan_id, sealed.expires_at)
        await self._refuse(code, message, dry_run=False, paths=request.paths or (), plan_id=plan_id)

    async def execute(
        self,
        request: RemovalRequest,
        *,
        person_confirmed: bool,
        detail: Detail = "auto",
        progress: Progress | None = None,
    ) -> RemovePathsResult:
        await self._ready()
        if self.read_only:
            raise GuardRefusal("read_only", "efile-mcp runs read-only (EFILE_READ_ONLY): removal is disabled.")
        plan, _ = await self._plan_for(request)
        if person_confirmed:
            await self.store.decide(plan.plan_id, plan.expires_at, Decision("approved", "client_form", at=self.clock()))
        redeemed = await self.store.redeem(plan.plan_id, plan.expires_at, token_alone=True)
        outcome = "redeemed" if redeemed.won else "asked" if redeemed.outcome == "waiting" else "spent"
        if outcome == "spent":
            await self._refuse(
                "reused",
                "this confirmation token was already used (or refused by the person): each "
                "token confirms one execution. Run remove_paths with dry_run=true again to preview what "
                "is left.",
                dry_run=False,
                plan_id=plan.plan_id,
            )
        if outcome == "asked":
            await self._refuse(
                "person_asked",
                "the person was asked to confirm this token and only their yes can "
                "execute it; nothing was deleted. Run a new dry run and let the person confirm it.",
                dry_run=False,
                plan_id=plan.plan_id,
            )
        confirmed_by = "person" if person_confirmed else "token"

        # The policy as it is now (a name protected or a root added since the dry run), then what is there now:
        # the same objects, folders read whole again (their contents may have changed without their own mtime).
        _, refused_now, _ = self._screen(plan.path_set)
        listings = self._listings()
        checkable = [p for p in plan.path_set if p not in refused_now]
        now_seen = await Inspector(listings, self.policy, self._walk_limits()).check(checkable, walk_folders=True)
        items: dict[str, RemoveItem] = {}
        to_send: list[str] = []
        for seen in plan.paths:
            current = now_seen.seen.get(seen.path)
            if seen.path in refused_now:
                items[seen.path] = RemoveItem(path=seen.path, status="refused", reason=refused_now[seen.path])
            elif seen.path in now_seen.missing:
                items[seen.path] = RemoveItem(path=seen.path, status="missing", reason="already absent")
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
                to_send.append(seen.path)

        await self.audit.write(  # fails closed: AuditUnavailable here means nothing is sent
            "intent",
            tool=TOOL,
            plan_id=plan.plan_id,
            confirmed_by=confirmed_by,
            paths=to_send,
            changed=[p for p, i in items.items() if i.status == "changed"],
        )
        run = RemovalRun(paths=tuple(to_send))
        afterwards: list[str] = []
        error: EfileMcpError | None = None
        interrupted: str | None = None
        try:
            if to_send:
                await self._remover.remove(run)
        except AuthError as exc:
            error = exc
        except BaseException as exc:
            interrupted = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else type(exc).__name__
            raise
        finally:
            run.settle_unfinished()
            by_path = {s.path: s for s in plan.paths}
            for path in to_send:
                items[path] = _item_from_outcome(run.outcomes[path], by_path[path])
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
                        await self.store.save_plan(
                            "run-" + plan.plan_id, json.dumps(task_ids).encode(), plan.expires_at + 86400
                        )
                    except EfileMcpError as exc:
                        afterwards.append(
                            f"the task ids could not be kept for get_task by plan_id ({exc}); "
                            "follow the task_ids of this answer"
                        )
            try:
                await self.audit.write(
                    "execution",
                    tool=TOOL,
                    dry_run=False,
                    decision=f"interrupted: {interrupted}" if interrupted else "executed",
                    confirmed_by=confirmed_by,
                    plan_id=plan.plan_id,
                    requests_sent=run.requests_sent,
                    task_ids=task_ids,
                    items=[_audit_item(i) for i in ordered],
                    summary=summary.model_dump(exclude_none=True),
                    error=str(error) if error else None,
                )
            except AuditUnavailable as exc:
                log.error("the execution of plan %s was sent but its audit record failed: %s", plan.plan_id, exc)
                afterwards.append(f"WARNING: the removal was sent, but its audit record could not be written ({exc})")
        if error is not None:
            raise GuardRefusal("auth", _auth_stopped(error, run, task_ids, self.audit))
        not_previewed = None
        if plan.select is not None and error is None:
            not_previewed = await self._not_previewed(plan)
        result = RemovePathsResult(
            dry_run=False,
            plan_id=plan.plan_id,
            summary=summary,
            # Above 50 the ids are kept for get_task(plan_id); if they could not be kept, they are all here.
            task_ids=task_ids if len(task_ids) <= ITEMS_LISTED_MAX or afterwards else None,
            task_count=len(task_ids) if len(task_ids) > ITEMS_LISTED_MAX else None,
            not_previewed=not_previewed or None,
            next_step=" ".join(
                [*afterwards, _next_step_after_execution(summary, plan.plan_id, len(task_ids), not_previewed)]
            ),
        )
        return shape(result, ordered, detail)

    async def _not_previewed(self, plan: Plan) -> int:
        """Matches of the plan's selection now present that the dry run did not show: left alone, and counted."""
        select = Selection.model_validate(plan.select)
        try:
            matches, _ = await find(
                self._listings(keep=False), select, Matcher(select, self.clock()), limits=self._walk_limits()
            )
        except EfileMcpError:
            return 0
        planned = set(plan.path_set) | set(plan.covered)
        return sum(
            1
            for m in matches
            if m.path not in planned and not any(m.path.startswith(p + "/") for p in ancestors_in(m.path, planned))
        )


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
