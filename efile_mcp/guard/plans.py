"""The removal guard: the one choke point between an agent's request and the destructive API call.

    dry_run(paths)           policy -> collapse -> existence via parent listings -> sealed token
    execute(paths, token)    policy again -> collapse -> token redeemed for exactly that set -> remove

Every plan, refusal and execution is written to the audit log before the call returns, including
when it is cancelled or stopped by an authentication failure.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from ..client import EfileApi, EfileTransport
from ..client.removal import EfileRemover, RemovalRun, RemoveOutcome
from ..errors import AuthError, EfileMcpError
from ..models.results import RemoveItem, RemovePathsResult, RemoveSummary
from ..models.wire import FileEntry
from .audit import AuditLog
from .paths import Collapsed, PathPolicy, PathRefusal, collapse
from .tokens import ConfirmationRefused, ConfirmationSigner

TOOL = "remove_paths"
#: Task ids quoted in an error message; the audit log has them all.
_TASK_IDS_IN_ERRORS = 50


@dataclass(frozen=True)
class ExecutionPreview:
    paths: tuple[str, ...]
    total_size: int
    plan_id: str


class GuardRefusal(EfileMcpError):
    """The whole call is refused before anything is sent. The message tells the agent what to do."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass
class _Screened:
    """A request after policy and collapse: refused items, and what may go further."""

    requested: int
    distinct: list[str]
    refused: dict[str, RemoveItem]
    collapsed: Collapsed

    @property
    def to_send(self) -> tuple[str, ...]:
        return self.collapsed.to_send


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(2, len(parts))]


class RemovalGuard:
    def __init__(
        self,
        *,
        policy: PathPolicy,
        signer: ConfirmationSigner,
        audit: AuditLog,
        transport: EfileTransport,
        max_paths: int,
    ) -> None:
        self.policy = policy
        self.signer = signer
        self.audit = audit
        self.max_paths = max_paths
        self._api = EfileApi(transport)
        self._remover = EfileRemover(transport)

    # ------------------------------------------------------------------ screening

    async def _screen(self, paths: Sequence[str], *, dry_run: bool) -> _Screened:
        if len(paths) > self.max_paths:
            await self._refuse(
                paths,
                dry_run,
                "too_many_paths",
                f"this call names {len(paths)} paths; the limit is {self.max_paths} per call (EFILE_MAX_PATHS). "
                "Nothing was done. Split the request into smaller calls, or remove a common parent folder instead.",
            )
        if not paths:
            await self._refuse(paths, dry_run, "no_paths", "name at least one absolute path to remove.")
        return self._classify(paths)

    def _classify(self, paths: Sequence[str]) -> _Screened:
        """Policy and collapse, no I/O: the one place that decides which paths may go further."""
        distinct = list(dict.fromkeys(paths))
        refused: dict[str, RemoveItem] = {}
        accepted: dict[str, None] = {}
        protected: list[str] = []
        for path in distinct:
            verdict = self.policy.check(path)
            if isinstance(verdict, PathRefusal):
                refused[path] = RemoveItem(path=path, status="refused", reason=verdict.message)
                if verdict.code == "protected":
                    protected.append(path)
            else:
                accepted[verdict] = None
        # A folder named together with a protected path inside it would take that path with it: the
        # request itself says the protected path matters, so the folder is refused too.
        for inner in protected:
            for ancestor in _ancestors(inner):
                if ancestor in accepted:
                    del accepted[ancestor]
                    refused[ancestor] = RemoveItem(
                        path=ancestor,
                        status="refused",
                        reason=f"it contains {inner!r}, which is protected and named in this same request: removing "
                        "this folder would remove it too. Name the other contents individually instead.",
                    )
        return _Screened(len(paths), distinct, refused, collapse(accepted))

    async def _refuse(self, paths: Sequence[str], dry_run: bool, code: str, message: str) -> None:
        await self.audit.write(
            "refusal", tool=TOOL, dry_run=dry_run, decision="refused", reason=code, paths=list(paths)[:10_000]
        )
        raise GuardRefusal(code, message)

    # ------------------------------------------------------------------ dry run

    async def dry_run(self, paths: Sequence[str]) -> RemovePathsResult:
        screened = await self._screen(paths, dry_run=True)
        found = await self._look_up(screened.to_send)
        items: dict[str, RemoveItem] = dict(screened.refused)
        for path in screened.to_send:
            entry = found.get(path)
            if isinstance(entry, FileEntry):
                items[path] = RemoveItem(path=path, status="would_remove", type=entry.kind, size=entry.size)
            elif isinstance(entry, str):
                items[path] = RemoveItem(path=path, status="refused", reason=entry)
            else:
                items[path] = RemoveItem(path=path, status="missing", reason="does not exist (nothing to remove)")
        self._fill_covered(items, screened.collapsed)
        removable = [p for p in screened.to_send if items[p].status == "would_remove"]
        ordered = [items[p] for p in screened.distinct]
        summary = self._summary(screened, ordered)
        issued = self.signer.issue(removable, total_size=summary.total_size) if removable else None
        await self.audit.write(
            "plan",
            tool=TOOL,
            dry_run=True,
            decision="planned" if issued else "nothing_to_remove",
            plan_id=issued.plan_id if issued else None,
            removable=removable,
            items=[_audit_item(i) for i in ordered],
            summary=summary.model_dump(),
        )
        if issued is None:
            next_step = "Nothing here can be removed; see each item's status and reason."
        else:
            next_step = (
                f"Show the person the {len(removable)} path(s) marked would_remove. To delete them, call remove_paths "
                "with dry_run=false, confirmation_token set to this token, and paths set to exactly confirm_paths "
                f"(before {issued.expires_at_iso}). The token works once."
            )
        return RemovePathsResult(
            dry_run=True,
            items=ordered,
            summary=summary,
            confirmation_token=issued.token if issued else None,
            expires_at=issued.expires_at_iso if issued else None,
            confirm_paths=removable if issued else None,
            next_step=next_step,
        )

    async def _look_up(self, paths: Sequence[str]) -> dict[str, FileEntry | str]:
        """Each path's entry, or the reason it could not be checked (str); absent paths are left out."""
        lookup = await self._api.find_in_parents(paths)
        found: dict[str, FileEntry | str] = dict(lookup.found)
        for path, exc in lookup.failed.items():
            found[path] = f"could not check whether it exists ({exc}); not confirmed, try again later"
        return found

    # ------------------------------------------------------------------ execution

    def preview_execution(self, paths: Sequence[str], confirmation_token: str | None) -> ExecutionPreview | None:
        """What an execution would remove, if it would pass the policy and the token now; else None.

        Nothing is audited or consumed: this is what the person is shown before they are asked, and
        a request that will be refused anyway is not worth asking them about.
        """
        if not paths or len(paths) > self.max_paths:
            return None
        screened = self._classify(paths)
        if screened.refused:
            return None
        to_send = screened.to_send
        try:
            plan = self.signer.preview(confirmation_token, to_send)
        except ConfirmationRefused:
            return None
        return ExecutionPreview(paths=to_send, total_size=plan.total_size, plan_id=plan.plan_id)

    async def refuse_unconfirmed(
        self, paths: Sequence[str], confirmation_token: str | None, code: str, message: str, *, burn: bool
    ) -> None:
        """The person did not confirm: audit it, and (when they said no) spend the token so it cannot be retried."""
        if burn:
            screened = collapse(dict.fromkeys(paths))
            try:
                self.signer.redeem(confirmation_token, screened.to_send)
            except ConfirmationRefused:
                pass
        await self._refuse(paths, False, code, message)

    async def execute(
        self, paths: Sequence[str], confirmation_token: str | None, *, confirmed_by: str = "token"
    ) -> RemovePathsResult:
        screened = await self._screen(paths, dry_run=False)
        if screened.refused:
            first = next(iter(screened.refused.values()))
            await self._refuse(
                paths,
                False,
                "policy",
                f"{len(screened.refused)} path(s) are not allowed, e.g. {first.reason} Nothing was deleted. "
                "Remove them from the request (a dry run shows which).",
            )
        try:
            plan_id = self.signer.redeem(confirmation_token, screened.to_send)
        except ConfirmationRefused as exc:
            await self._refuse(paths, False, exc.code, str(exc))
            raise AssertionError("unreachable") from None  # pragma: no cover

        run = RemovalRun(paths=screened.to_send)
        error: EfileMcpError | None = None
        interrupted: str | None = None
        try:
            await self._remover.remove(run)
        except AuthError as exc:
            error = exc
        except BaseException as exc:
            # Cancelled by the client (or worse): the audit line below still says what was obtained.
            interrupted = "cancelled" if isinstance(exc, anyio.get_cancelled_exc_class()) else type(exc).__name__
            raise
        finally:
            run.settle_unfinished()
            items = {path: _item_from_outcome(run.outcomes[path]) for path in screened.to_send}
            self._fill_covered(items, screened.collapsed)
            ordered = [items[p] for p in screened.distinct]
            summary = self._summary(screened, ordered)
            task_ids = [i.task_id for i in ordered if i.task_id and i.path not in screened.collapsed.covered]
            await self.audit.write(
                "execution",
                tool=TOOL,
                dry_run=False,
                decision=f"interrupted: {interrupted}" if interrupted else "executed",
                confirmed_by=confirmed_by,
                plan_id=plan_id,
                requests_sent=run.requests_sent,
                task_ids=task_ids,
                items=[_audit_item(i) for i in ordered],
                summary=summary.model_dump(),
                error=str(error) if error else None,
            )
        if error is not None:
            kinds = Counter(outcome.kind for outcome in run.outcomes.values())
            shown = task_ids[:_TASK_IDS_IN_ERRORS]
            raise GuardRefusal(
                "auth",
                f"{error} The removal stopped: {kinds['submitted']} path(s) had already been submitted"
                + (f" (task ids: {', '.join(shown)}{' …' if len(task_ids) > len(shown) else ''}; follow them "
                   "with get_task)" if task_ids else "")
                + f", {kinds['not_sent']} were not sent"
                + (f", {kinds['unknown']} have an unknown outcome (an answer was lost)" if kinds["unknown"] else "")
                + (f", {kinds['missing'] + kinds['verified_absent']} were already absent"
                   if kinds["missing"] + kinds["verified_absent"] else "")
                + (f", {kinds['failed']} failed" if kinds["failed"] else "")
                + f". Every path's state is in the audit log ({self.audit.path}). Dry-run again after fixing the token.",
            )
        return RemovePathsResult(
            dry_run=False,
            items=ordered,
            summary=summary,
            task_ids=task_ids,
            next_step=_next_step_after_execution(summary),
        )

    # ------------------------------------------------------------------ shared

    @staticmethod
    def _fill_covered(items: dict[str, RemoveItem], collapsed: Collapsed) -> None:
        for path, parent in collapsed.covered.items():
            outer = items[parent]
            items[path] = outer.model_copy(
                update={
                    "path": path,
                    "reason": f"inside {parent!r}, which this call removes; not sent separately",
                    "type": None,
                    "size": None,
                }
            )

    @staticmethod
    def _summary(screened: _Screened, items: list[RemoveItem]) -> RemoveSummary:
        counts: dict[str, int] = defaultdict(int)
        for item in items:
            counts[item.status] += 1
        covered = set(screened.collapsed.covered)
        return RemoveSummary(
            requested=screened.requested,
            distinct=len(screened.distinct),
            covered=len(covered),
            total_size=sum(
                i.size or 0 for i in items if i.status == "would_remove" and i.type == "file" and i.path not in covered
            ),
            **counts,
        )


def _item_from_outcome(outcome: RemoveOutcome) -> RemoveItem:
    path = outcome.path
    if outcome.kind == "missing":
        return RemoveItem(path=path, status="missing", reason=outcome.message, error_code=outcome.error_code)
    if outcome.kind == "verified_absent":
        return RemoveItem(path=path, status="removed", reason=outcome.message)
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
    common = {"path": path, "task_id": task.task_id, "task_status": task.status}
    if task.status == "complete":
        return RemoveItem(status="removed", **common)
    if task.status in ("waiting", "processing"):
        return RemoveItem(status="queued", reason="a server task is removing it; follow it with get_task", **common)
    if task.error_code == "911020":
        return RemoveItem(status="missing", reason="already absent", error_code=task.error_code, **common)
    reason = task.error_msg or ("cancelled" if task.status == "cancel" else "the server reported a failure")
    return RemoveItem(status="failed", reason=reason, error_code=task.error_code, **common)


def _next_step_after_execution(summary: RemoveSummary) -> str:
    steps = []
    if summary.queued:
        steps.append(f"{summary.queued} path(s) are queued: call get_task with task_ids and wait_seconds to follow them")
    if summary.failed:
        steps.append(f"{summary.failed} path(s) failed: see each item's reason")
    if not steps:
        return "Done: every confirmed path is removed or was already absent."
    return "; ".join(steps) + "."


def _audit_item(item: RemoveItem) -> dict[str, object]:
    record: dict[str, object] = {"path": item.path, "status": item.status}
    if item.task_id:
        record["task_id"] = item.task_id
    if item.error_code:
        record["error_code"] = item.error_code
    if item.status in ("refused", "failed") and item.reason:
        record["reason"] = item.reason
    return record
