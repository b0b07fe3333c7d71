"""The destructive call: POST async-remove. Imported by the guard only (an import-linter contract says so).

Paths go out in chunks of at most 100, with bounded concurrency. Every path ends with exactly one
outcome in the run's record, which is filled as answers arrive, so a call that is cancelled or stopped
by an auth failure still says what was submitted, what was never sent, and what is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import anyio

from ..errors import (
    NOT_FOUND_CODE,
    ApiError,
    AuthError,
    EfileMcpError,
    error_code_of,
    outcome_unknown,
)
from ..models.wire import ASYNC_REMOVE, REMOVE_BATCH_MAX, FileOperTask, RemoveResult
from ._groups import task_group
from .api import EfileApi, chunked
from .transport import EfileTransport
from .walk import Listings

log = logging.getLogger("efile_mcp.client")

#: Codes that a whole async-remove call answers because of one path in it: the batch is bisected to find it.
PER_PATH_CODES = frozenset({NOT_FOUND_CODE, "911029", "911030", "911700"})

#: submitted: a task exists. missing: already absent. failed: the API refused it (nothing done).
#: verified_absent: the answer was lost, but a listing shows the path gone. unknown: no way to tell.
#: not_sent: never submitted.
OutcomeKind = Literal["submitted", "missing", "failed", "verified_absent", "unknown", "not_sent"]


@dataclass(frozen=True, slots=True)
class SubmittedTask:
    """What a removal keeps of a task object: a full `FileOperTask` per path is ~4 KB, 40 MB at 10,000 paths."""

    task_id: str
    status: str
    error_code: str | None = None
    error_msg: str | None = None

    @classmethod
    def of(cls, task: FileOperTask) -> SubmittedTask:
        return cls(task.task_id, task.status, task.error_code, task.error_msg)


@dataclass(frozen=True, slots=True)
class RemoveOutcome:
    path: str
    kind: OutcomeKind
    task: SubmittedTask | None = None
    error_code: str | None = None
    message: str | None = None


@dataclass
class RemovalRun:
    """The live record of one removal: read it after `remove` returns, raises or is cancelled."""

    paths: tuple[str, ...]
    outcomes: dict[str, RemoveOutcome] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    requests_sent: int = 0
    auth_error: AuthError | None = None
    #: Paths whose batch was resent after an attempt that may have acted (its answer lost): the
    #: documented retry after an unknown outcome. Such a path later found absent was most likely removed by us.
    resent_after_unknown: set[str] = field(default_factory=set)

    def settle_unfinished(self) -> None:
        """Give every path without an outcome one: in flight when stopped -> unknown; never started -> not_sent."""
        for path in self.paths:
            if path in self.outcomes:
                continue
            if path in self.in_flight:
                self.outcomes[path] = RemoveOutcome(
                    path, "unknown", message="the call was interrupted while this path was being submitted"
                )
            else:
                self.outcomes[path] = RemoveOutcome(path, "not_sent", message="never submitted")


class EfileRemover:
    def __init__(self, transport: EfileTransport, *, concurrency: int | None = None) -> None:
        self.transport = transport
        self.concurrency = concurrency or transport.concurrency
        self._api = EfileApi(transport)

    async def remove(self, run: RemovalRun) -> None:
        """Submit `run.paths`. Raises AuthError once in-flight chunks have settled; starts no chunk after it."""
        slots = anyio.Semaphore(self.concurrency)

        async def worker(chunk: Sequence[str]) -> None:
            async with slots:
                if run.auth_error is not None:
                    return  # settle_unfinished() marks these not_sent
                try:
                    await self._submit(run, chunk)
                except AuthError as exc:
                    run.auth_error = run.auth_error or exc

        async with task_group() as tg:
            for chunk in chunked(run.paths, REMOVE_BATCH_MAX):
                tg.start_soon(worker, chunk)
        if run.auth_error is None:
            await self._reconcile(run)
        run.settle_unfinished()
        if run.auth_error is not None:
            raise run.auth_error

    async def _reconcile(self, run: RemovalRun) -> None:
        """Turn unknown outcomes into known ones where the listing can tell: gone means removed.

        Each path is looked up on its own (keyWord = its name), never inferred from pages of a
        directory that other batches of this very call may be shrinking: a path shifted across a
        page boundary must not pass for gone.
        """
        unknown = [path for path, outcome in run.outcomes.items() if outcome.kind == "unknown"]
        if not unknown:
            return
        present = await self._present_by_name(unknown)
        if present is None:
            return  # the lookups failed too: they stay unknown, and say so
        for path in unknown:
            previous = run.outcomes[path].message
            if path in present:
                run.outcomes[path] = replace(
                    run.outcomes[path],
                    message=f"{previous}; the path is still there, but the server may still be working on it",
                )
            else:
                run.outcomes[path] = replace(
                    run.outcomes[path], kind="verified_absent", message=f"{previous}; a listing shows the path is gone"
                )

    async def _submit(self, run: RemovalRun, chunk: Sequence[str], *, probe: bool = True) -> None:
        run.in_flight.update(chunk)

        def note_retry(exc: BaseException) -> None:
            if outcome_unknown(exc):
                run.resent_after_unknown.update(chunk)
            run.requests_sent += 1

        try:
            run.requests_sent += 1
            data = await self.transport.call(
                "POST", ASYNC_REMOVE, json=[{"sourcePath": p} for p in chunk], on_retry=note_retry
            )
        except ApiError as exc:
            run.in_flight.difference_update(chunk)
            if exc.code in PER_PATH_CODES and not isinstance(exc, AuthError):
                await self._isolate(run, chunk, exc, probe=probe)
            else:
                # A refusal of the whole call (the token, a parameter): this attempt did nothing. An
                # earlier attempt of the same batch whose answer was lost may have, though.
                kind: OutcomeKind = "not_sent" if isinstance(exc, AuthError) else "failed"
                for path in chunk:
                    run.outcomes[path] = self._after_refusal(run, path, kind, exc)
            if isinstance(exc, AuthError):
                raise
            return
        except EfileMcpError as exc:
            run.in_flight.difference_update(chunk)
            # No usable answer after the retries. Turned away (rate limit, 429): nothing was done by
            # the last attempt. Lost or unreadable: the server may or may not have acted.
            for path in chunk:
                kind = "unknown" if outcome_unknown(exc) else "failed"
                run.outcomes[path] = self._after_refusal(run, path, kind, exc)
            return
        run.in_flight.difference_update(chunk)
        self._record_tasks(run, chunk, data)

    @staticmethod
    def _after_refusal(run: RemovalRun, path: str, kind: OutcomeKind, exc: EfileMcpError) -> RemoveOutcome:
        if path in run.resent_after_unknown:
            # The last attempt was turned away, but an earlier one may have acted: that is not "failed".
            return RemoveOutcome(
                path,
                "unknown",
                error_code=error_code_of(exc),
                message=f"an earlier attempt's answer was lost and the retry was refused ({exc})",
            )
        if kind == "not_sent":
            return RemoveOutcome(
                path, "not_sent", error_code=error_code_of(exc), message="the API did not accept the token"
            )
        return RemoveOutcome(path, kind, error_code=error_code_of(exc), message=str(exc))

    async def _isolate(self, run: RemovalRun, chunk: Sequence[str], exc: ApiError, *, probe: bool = True) -> None:
        """The whole call failed because of some path in it: find the culprit(s), send the rest again.

        For 911020 the parents are listed first: the paths the listing shows are still there and are
        resent together; the rest are *probably* the vanished ones, and a bisection of just those
        proves it. A listing is only a hint here: a path it missed (pages shift while this call's
        other batches delete siblings) is still sent, never declared missing on the listing's word.
        """
        if probe and exc.code == NOT_FOUND_CODE and len(chunk) > 1:
            seen = await self._seen_in_parents(chunk)
            if seen is not None and seen:
                likely_present = [path for path in chunk if path in seen]
                suspects = [path for path in chunk if path not in seen]
                if likely_present:
                    await self._submit(run, likely_present, probe=False)
                if suspects:
                    await self._submit(run, suspects, probe=False)
                return
        if len(chunk) == 1:
            path = chunk[0]
            if exc.code == NOT_FOUND_CODE:
                run.outcomes[path] = RemoveOutcome(path, "missing", error_code=exc.code, message=_absent(run, path))
            else:
                run.outcomes[path] = RemoveOutcome(path, "failed", error_code=exc.code, message=str(exc))
            return
        log.info("async-remove answered %s for a batch of %d; isolating the path(s)", exc.code, len(chunk))
        middle = len(chunk) // 2
        for half in (chunk[:middle], chunk[middle:]):
            await self._submit(run, half, probe=False)

    async def _seen_in_parents(self, chunk: Sequence[str]) -> set[str] | None:
        """The paths their parents' listings show (one listing per parent); None when a listing fails."""
        try:
            found = await Listings(self._api, concurrency=self.concurrency).entries(chunk)
        except AuthError:
            raise
        except EfileMcpError:
            return None
        if any(isinstance(entry, EfileMcpError) for entry in found.values()):
            return None
        return {path for path, entry in found.items() if entry is not None}

    async def _present_by_name(self, paths: Sequence[str]) -> set[str] | None:
        """Which paths exist, each looked up with keyWord = its own name; None when a lookup fails."""
        present: set[str] = set()
        # keep=False: no folder is read once and trusted for the others; each path is asked about by its name.
        listings = Listings(self._api, concurrency=self.concurrency, keep=False)

        async def look(path: str) -> None:
            if await listings.entry(path) is not None:
                present.add(path)

        try:
            async with task_group() as tg:
                for path in paths:
                    tg.start_soon(look, path)
        except EfileMcpError:
            return None
        return present

    @staticmethod
    def _record_tasks(run: RemovalRun, chunk: Sequence[str], data: object) -> None:
        try:
            result = RemoveResult.model_validate(data or {})
        except ValueError as exc:
            for path in chunk:
                run.outcomes[path] = RemoveOutcome(path, "unknown", message=f"unreadable answer: {exc}")
            return
        by_path = {task.source_path: task for task in result.file_oper_tasks if task.source_path}
        unmatched = [task for task in result.file_oper_tasks if not task.source_path or task.source_path not in chunk]
        for path in chunk:
            task = by_path.get(path) or (unmatched.pop(0) if unmatched else None)
            if task is None:
                run.outcomes[path] = RemoveOutcome(
                    path, "unknown", message="the server accepted the batch but returned no task for this path"
                )
            else:
                run.outcomes[path] = RemoveOutcome(path, "submitted", task=SubmittedTask.of(task))


def _absent(run: RemovalRun, path: str) -> str:
    if path in run.resent_after_unknown:
        return "absent when resent: an earlier attempt's answer was lost, so it was most likely removed by this call"
    return "already absent"
