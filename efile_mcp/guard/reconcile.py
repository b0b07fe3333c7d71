"""Reconciling the audit log: every `intent` without an outcome gets one, from what the storage shows now.

An `intent` record is written (and fsynced) before a removal is sent, its `execution` record after the
answers came back. A process killed in between leaves an intent without an outcome: the paths may be
gone, still there, or queued in tasks, and nobody recorded which. At start (`reconcile_at_start`, in the
background) and when a resumed execution runs (`reconcile`, with the plan ids), each such intent gets a
`reconciled` record with every path's state as the storage shows it now:

    {"event": "reconciled", "plan_id": ..., "intent_time": ..., "gone": [...], "still_there": [...],
     "unknown": [{"path": ..., "error": ...}], "task_ids": [...], "counts": {...}}

so an incident reader never has to check paths by hand.

Bounded: the audit file and its newest `MAX_ROTATED_FILES` rotated siblings (`audit.jsonl.1`,
`audit.jsonl-20260101`, as logrotate names them; compressed ones are skipped) are read line by line,
oldest first, and only lines naming an intent or an outcome are parsed (61 MB, 300,000 records: 1.6 s,
in a worker thread); only intents still open are kept, at most `MAX_OPEN_INTENTS`. What already has an
outcome (`execution` or `reconciled`) is never reconciled again.

Not someone else's execution still running: every intent names the process that wrote it
(`host:pid:nonce`, see audit.py). At start, an intent of this very process, or of another live process on
this host, is left alone; one from another host only once it is older than `FOREIGN_GRACE_SECONDS` (a
replica elsewhere may still be sending it). A resumed execution names its plan ids and holds the
plan's lease, so its intents are reconciled whoever wrote them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import anyio

from ..errors import EfileMcpError
from .audit import PROCESS, AuditLog

log = logging.getLogger("efile_mcp.audit")

#: Events that close an intent of the same plan.
OUTCOME_EVENTS = frozenset({"execution", "reconciled"})
#: The most open intents one pass keeps (and reconciles); the rest wait for the next start.
MAX_OPEN_INTENTS = 1_000
#: An intent written on another host is reconciled at start only once it is this old.
FOREIGN_GRACE_SECONDS = 600.0
#: The most seconds the reconciliation at start may take; what is left waits for the next start.
START_TIME_LIMIT = 300.0
#: Rotated files read, newest first: an intent older than these was seen (and reconciled) by an earlier start.
MAX_ROTATED_FILES = 3
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".z")
_WANTED = (b'"event":"intent"', *(f'"event":"{event}"'.encode() for event in OUTCOME_EVENTS))


class PathStates(Protocol):
    """What the storage shows: each path's entry, None when absent, or the error that kept it from being read."""

    async def entries(self, paths: Collection[str]) -> Mapping[str, object | EfileMcpError | None]: ...


@dataclass
class OpenIntent:
    plan_id: str
    time: str
    paths: list[str]
    task_ids: list[str] = field(default_factory=list)
    process: str | None = None
    tool: str = "remove_paths"
    mode: str | None = None  # "delete" or "quarantine" (intents written before modes existed have none)


@dataclass
class Reconciliation:
    """What one pass did: plans reconciled, and what was left for later and why."""

    reconciled: list[str] = field(default_factory=list)
    left_running: list[str] = field(default_factory=list)
    failed: str | None = None


def audit_files(path: Path) -> list[Path]:
    """The newest rotated siblings of the audit file, oldest first, then the file itself (if present)."""
    siblings: list[tuple[float, str, Path]] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        names = []
    for name in names:
        if name == path.name or not name.startswith((path.name + ".", path.name + "-")):
            continue
        if name.lower().endswith(_COMPRESSED):
            continue
        candidate = path.parent / name
        try:
            if candidate.is_symlink() or not candidate.is_file():
                continue
            siblings.append((candidate.stat().st_mtime, name, candidate))
        except OSError:
            continue
    siblings.sort()
    found = [candidate for _, _, candidate in siblings[-MAX_ROTATED_FILES:]]
    if path.is_file():
        found.append(path)
    return found


def _records(files: list[Path]) -> Iterator[dict[str, Any]]:
    for file in files:
        try:
            stream = file.open("rb")
        except OSError as exc:
            log.warning("cannot read the audit file %s to reconcile it: %s", file, exc.strerror or exc)
            continue
        with stream:
            for line in stream:
                if not any(marker in line for marker in _WANTED):
                    continue
                try:
                    record = json.loads(line)
                except ValueError:  # a torn last line
                    continue
                if isinstance(record, dict) and isinstance(record.get("plan_id"), str):
                    yield record


def open_intents(path: Path, plan_ids: Collection[str] | None = None) -> list[OpenIntent]:
    """Intents with no outcome after them (for `plan_ids`, or every plan), oldest first."""
    wanted = set(plan_ids) if plan_ids is not None else None
    open_: dict[str, list[OpenIntent]] = {}
    count = 0
    for record in _records(audit_files(path)):
        plan_id = record["plan_id"]
        if wanted is not None and plan_id not in wanted:
            continue
        if record.get("event") in OUTCOME_EVENTS:
            count -= len(open_.pop(plan_id, ()))
            continue
        paths = record.get("paths")
        intent = OpenIntent(
            plan_id=plan_id,
            time=str(record.get("time", "")),
            paths=[p for p in paths if isinstance(p, str)] if isinstance(paths, list) else [],
            task_ids=[t for t in record.get("task_ids") or () if isinstance(t, str)],
            process=record.get("process") if isinstance(record.get("process"), str) else None,
            tool=str(record.get("tool") or "remove_paths"),
            mode=record.get("mode") if isinstance(record.get("mode"), str) else None,
        )
        open_.setdefault(plan_id, []).append(intent)
        count += 1
        if count > MAX_OPEN_INTENTS:  # keep the newest; the oldest wait for a later pass
            oldest = min(open_, key=lambda plan: open_[plan][0].time)
            count -= len(open_.pop(oldest))
    return sorted((i for intents in open_.values() for i in intents), key=lambda i: i.time)


def _age_seconds(stamp: str, now: float) -> float:
    try:
        return now - datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return float("inf")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def may_still_run(intent: OpenIntent, now: float) -> str | None:
    """Why the execution behind `intent` may still be running (then it is left alone at start), or None."""
    if intent.process is None:
        return None
    if intent.process == PROCESS:
        return "this process is executing it"
    host, _, rest = intent.process.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname():
        if _age_seconds(intent.time, now) < FOREIGN_GRACE_SECONDS:
            return f"written on {host}, whose execution may still be running"
        return None
    if pid_text.isdigit() and int(pid_text) != os.getpid() and _pid_alive(int(pid_text)):
        return f"process {pid_text} on this host is still running"
    return None  # that process is gone (or was an earlier life of this pid)


async def reconcile(
    audit: AuditLog,
    states: PathStates,
    *,
    plan_ids: Collection[str] | None = None,
    clock: Callable[[], float] | None = None,
) -> Reconciliation:
    """Give every open intent (of `plan_ids`, or all) a `reconciled` record with each path's state now.

    With `plan_ids` (a resumed execution holding the plan's lease) every open intent of those plans is
    reconciled; without, intents whose execution may still be running are left (see `may_still_run`).
    Raises what writing the audit raises (`AuditUnavailable`) and what listing raises for every path
    (`AuthError`); a path that cannot be read is recorded as unknown, with why.
    """
    now = (clock or time.time)()
    intents = await anyio.to_thread.run_sync(open_intents, audit.path, plan_ids)
    done = Reconciliation()
    by_plan: dict[str, list[OpenIntent]] = {}
    for intent in intents:
        by_plan.setdefault(intent.plan_id, []).append(intent)
    for plan_id, plan_intents in by_plan.items():
        if plan_ids is None:
            why = next((w for w in (may_still_run(i, now) for i in plan_intents) if w), None)
            if why is not None:
                done.left_running.append(plan_id)
                log.info("audit: plan %s has an intent without outcome, left for now: %s", plan_id, why)
                continue
        paths = list(dict.fromkeys(p for i in plan_intents for p in i.paths))
        seen = await states.entries(paths) if paths else {}
        gone: list[str] = []
        still_there: list[str] = []
        unknown: list[dict[str, str]] = []
        for path in paths:
            state = seen.get(path)
            if isinstance(state, EfileMcpError):
                unknown.append({"path": path, "error": str(state)})
            elif state is None:
                gone.append(path)
            else:
                still_there.append(path)
        mode = plan_intents[-1].mode
        where = (
            "; a path gone from its place was most likely moved to quarantine (restore_paths with this plan_id)"
            if mode == "quarantine"
            else ""
        )
        await audit.write(
            "reconciled",
            tool=plan_intents[0].tool,
            plan_id=plan_id,
            mode=mode,
            intent_time=plan_intents[0].time,
            reason="no outcome was recorded for this intent (the process stopped while executing it); "
            f"each path's state is as the storage showed it now{where}",
            gone=gone,
            still_there=still_there,
            unknown=unknown,
            task_ids=list(dict.fromkeys(t for i in plan_intents for t in i.task_ids)),
            counts={"gone": len(gone), "still_there": len(still_there), "unknown": len(unknown)},
        )
        done.reconciled.append(plan_id)
    if done.reconciled:
        log.warning(
            "audit: %d execution(s) left without an outcome were reconciled from the storage's state (plans %s)",
            len(done.reconciled),
            ", ".join(done.reconciled[:5]) + (" …" if len(done.reconciled) > 5 else ""),
        )
    return done


async def reconcile_at_start(
    audit: AuditLog, states: PathStates, *, time_limit: float = START_TIME_LIMIT
) -> Reconciliation:
    """The pass at server start: bounded in time, never raising (what fails is logged and left for next time)."""
    done = Reconciliation()
    with anyio.move_on_after(time_limit) as scope:
        try:
            done = await reconcile(audit, states)
        except EfileMcpError as exc:  # AuthError, AuditUnavailable, an unreachable storage
            done.failed = str(exc)
            log.warning("audit: intents without an outcome could not be reconciled now (%s); next start retries", exc)
        except OSError as exc:
            done.failed = str(exc)
            log.warning("audit: cannot read the audit log to reconcile it: %s", exc)
        except Exception as exc:  # a background pass must never take the server down with it
            done.failed = f"{type(exc).__name__}: {exc}"
            log.exception("audit: the reconciliation at start failed; the next start retries")
    if scope.cancelled_caught:
        done.failed = f"stopped after {time_limit:g} s"
        log.warning("audit: reconciliation stopped after %g s; the next start goes on with what is left", time_limit)
    return done
