"""A dry run of a selection, planned as it is found: rows in the store, never the plan in memory.

`remove_paths(select=...)` may match a million paths (EFILE_MAX_PLAN_PATHS). The search is read in rounds
of at most `ROUND_ENTRIES` listed entries; each round's matches are screened (policy, mode), looked up
again (`Inspector`: the objects as they are; a matched folder's tree read afresh, its fingerprint taken),
added to the plan's rows (`PlanWriter`) and to the answer's tally, then dropped. Memory is a round's,
whatever the number of matches.

A folder matches only once its tree is read (its size and age are its tree's), after the matches inside
it, which it covers: the search holds those back until the folder is done (`FindWalk(cover=True)`), so
every match handed out is final and goes straight into the rows. A matched folder too big for one call is
read on by the next (its walk kept with the search's frontier); the plan waits for it.

When the call's walk budget (EFILE_WALK_MAX_ENTRIES / EFILE_WALK_MAX_SECONDS) ends before the search
does, the answer is `resume`: the search's frontier, the rows' count and the tally are kept in the
state store, and the next call with `resume` reads on from there, in this process or another. The plan
and its token come only when the search is whole: then the rows are read back once (the digest the token
binds, the quota each frees, their audit lines).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from ..client.walk import Entry, TreeWalk, WalkLimits
from ..models.results import ITEMS_LISTED_MAX, RemoveItem, RemovePathsResult, RemoveSummary, Selection
from ..models.times import iso_time
from . import insight
from .execution import ROUND_ENTRIES
from .insight import FindWalk, Match, incomplete_reason
from .inspect import Inspection
from .paths import display
from .planned import QuotaFreed, audit_plan, seal
from .ports import RemoveMode
from .quarantine import is_quarantine_path
from .report import Detail, Tally, item_of
from .requests import TOOL, Progress, selection_key, walk_progress
from .seen import ROWS_PER_CHUNK, Plan, PlanWriter, SeenPath, plan_rows, verified_units

if TYPE_CHECKING:
    from .removal import Removal

#: A plan read across calls keeps its rows this long after the first call (the token never outlives them).
ROWS_KEPT_SECONDS = 6 * 3600.0
#: A plan keeps this many of its dry run's exceptions (refused, missing) for the person's review page, and at most
#: this many characters of them (a reason cut to EXCEPTION_REASON_CHARS).
EXCEPTIONS_KEPT = 10_000
EXCEPTIONS_CHARS = 2_000_000
EXCEPTION_REASON_CHARS = 400


class SelectionDryRun:
    """One dry run of a selection (of files, folders or both), possibly across calls: `plan()` -> the answer."""

    def __init__(self, removal: Removal, select: Selection, mode: RemoveMode | None, detail: Detail) -> None:
        self.removal = removal
        self.host = removal.host
        self.select = select
        self.asked_mode = mode
        #: The mode the first call resolved (asked, or this server's default then): every later call, on any
        #: replica, plans the same; None until resolved.
        self.mode: RemoveMode | None = None
        #: Whether this call left a state behind (saved to read on, or finished): else a taken one is put back.
        self.settled = False
        self.search = FindWalk(select, self.host.clock(), cover=True)
        #: Matched folders whose trees an earlier round or call began reading for the plan, by path: [its TreeWalk
        #: state (None: not begun), how many matches it covers].
        self.folder_walks: dict[str, list[Any]] = {}
        #: Matches inside planned folders (removed with them): counted when their folder is planned.
        self.covered = 0
        #: What the plan's reading is checked against, beyond each path (guard/removal.py `_policy_key`): the
        #: parts of folders read by an earlier call were checked under it.
        self.policy_key = removal._policy_key()
        self.plan_id = secrets.token_hex(12)
        self.started = self.host.clock()
        self.rows_expire = self.started + ROWS_KEPT_SECONDS + self.host.signer.ttl
        self.tally = Tally(detail)
        #: The runs of rows stored by earlier calls ([count, digest]): the plan's header keeps them all.
        self.units: list[list[Any]] = []
        self.exceptions: list[list[str]] = []
        self.exceptions_chars = 0
        self.resume_id: str | None = None

    # ------------------------------------------------------------------------------------ across calls

    def to_json(self) -> dict[str, Any]:
        return {
            "k": "files",
            "s": selection_key(self.select),
            "m": self.asked_mode,
            "mr": self.mode,
            "f": self.search.to_json(),
            "id": self.plan_id,
            "t0": self.started,
            "u": self.units,
            "y": self.tally.to_json(),
            "x": self.exceptions,
            "fw": self.folder_walks,
            "cv": self.covered,
            "pk": self.policy_key,
        }

    @classmethod
    def from_json(cls, removal: Removal, data: dict[str, Any], resume_id: str) -> SelectionDryRun:
        chosen = cls(removal, Selection.model_validate(data["s"]), data["m"], "auto")
        chosen.mode = data.get("mr")
        chosen.search = FindWalk.from_json(data["f"])
        chosen.plan_id = str(data["id"])
        chosen.started = float(data["t0"])
        chosen.rows_expire = chosen.started + ROWS_KEPT_SECONDS + chosen.host.signer.ttl
        chosen.units = [[int(n), str(d)] for n, d in data["u"]]
        chosen.tally = Tally.from_json(data["y"])
        chosen.exceptions = [list(map(str, row)) for row in data["x"]]
        chosen.exceptions_chars = sum(len(row[0]) + len(row[-1]) for row in chosen.exceptions)
        chosen.folder_walks = {str(path): list(kept) for path, kept in data.get("fw", {}).items()}
        chosen.covered = int(data.get("cv", 0))
        chosen.policy_key = str(data.get("pk", ""))
        chosen.resume_id = resume_id
        return chosen

    # ------------------------------------------------------------------------------------ the call

    async def plan(self, progress: Progress | None) -> RemovePathsResult:
        removal, host, select = self.removal, self.host, self.select
        root = select.path
        if host.clock() >= self.started + ROWS_KEPT_SECONDS:
            await removal._refuse(
                "resume",
                f"this dry run began over {int(ROWS_KEPT_SECONDS // 3600)} hours ago and what it planned has expired: "
                "call remove_paths again without resume, which starts over.",
                dry_run=True,
            )
        # On every call, resumed too: the policy may have changed since (a name protected, a root withdrawn).
        await removal._check_selection_root(select)
        if self.policy_key != removal._policy_key():
            # The parts of folders read by earlier calls were checked for protected names and links under the
            # policy then; each path is screened again, but what is inside them would not be.
            await removal._refuse(
                "policy",
                "the protected names or EFILE_LINKS_INSIDE changed while this selection was read: what was read "
                "before was not checked against them. Nothing was planned; call remove_paths again without resume "
                "(a new dry run).",
                dry_run=True,
            )
        purge = is_quarantine_path(root)
        if self.mode is None:
            mode: RemoveMode = "delete" if purge else self.asked_mode or removal.default_mode
            if mode == "quarantine" and removal.quarantine is None and self.asked_mode is None:
                mode = "delete"  # the default where no quarantine is set up; an explicit request was refused before
            self.mode = mode
        mode = self.mode
        if mode == "quarantine" and removal.quarantine is None:
            # Begun as a quarantine where one was set up: never carried on as a permanent deletion elsewhere.
            from .removal import REFUSALS  # (at call time: removal.py imports this module)

            await removal._refuse("quarantine_unavailable", REFUSALS["quarantine_unavailable"], dry_run=True)
        writer = PlanWriter(host.store, self.plan_id, self.rows_expire, units=self.units)
        limits = host._walk_limits()  # the call's budget; each round gets at most ROUND_ENTRIES of it
        read = 0
        while True:
            read_before = read
            if self.folder_walks:  # matched folders an earlier round or call began reading: read on first
                read += await self._read_folders(mode, writer, limits.less(read))
            if not self.search.walk.finished and read < limits.max_entries:
                before = self.search.walk.stats.entries_seen
                rounds = WalkLimits(min(ROUND_ENTRIES, max(0, limits.max_entries - read)), limits.deadline)
                stats = await self.search.read_on(host._listings(), rounds, progress=walk_progress(progress))
                read += stats.entries_seen - before
                if any(u.path == root for u in stats.unreadable):
                    await removal._refuse(
                        "select_path",
                        f"cannot list {display(root)}: {stats.unreadable[0].reason}",
                        dry_run=True,
                        paths=[root],
                    )
                read += await self._add(self.search.take(len(self.search.found)), mode, writer, limits.less(read))
                if stats.stopped == "caller":
                    break
            if writer.count > removal.max_plan_paths:
                why = removal._bound_selection(writer.count)
                assert why is not None
                await removal._refuse("too_many_paths", why.replace("matches ", "matches at least ", 1), dry_run=True)
            if self.whole:
                break
            if read >= limits.max_entries or anyio.current_time() >= limits.deadline:
                break
            if read == read_before:  # a round that read nothing would not read more in the next
                break
        self.units = writer.units
        if not self.whole:
            return await self._unfinished(writer, mode)
        return await self._finished(writer, mode, purge, self.search.walk.stats)

    @property
    def whole(self) -> bool:
        """The search is done and every matched folder read: the plan can be finished."""
        return self.search.walk.finished and not self.search.found and not self.folder_walks

    async def _add(self, matches: list[Match], mode: RemoveMode, writer: PlanWriter, limits: WalkLimits) -> int:
        """A round's matches: screened, looked up again, into the rows and the tally; then dropped. A matched
        folder's tree is read within `limits` (what is left of the call's budget): the entries read are returned."""
        removal = self.removal
        _, refused, accepted = removal._screen([m.path for m in matches])
        if not matches:
            return 0
        # The files' own entries as the search listed them: their parents are not listed a second time. Every
        # folder above them is, and every matched folder (below).
        listed = {
            m.path: Entry(m.path.rpartition("/")[2], "file", m.size, m.mtime) for m in matches if m.kind == "file"
        }
        covers = {m.path: m.covers for m in matches if m.covers}
        del matches
        if mode == "quarantine":
            for path in [p for p in accepted if "," in p]:
                accepted.remove(path)
                refused[path] = (
                    "its path holds a comma, and the storage's move takes its sources comma-separated: it cannot "
                    "be quarantined. Remove it with mode='delete' (permanent), or rename it and dry-run again."
                )
        # A reader of its own, not the search's: a folder swapped for a link after the search listed it must show
        # as what it is now, never be planned through the search's older listing. Only the files' own entries come
        # from the search (a file swapped for a link since is planned as the file it was, and execution, which
        # looks every path up again, finds it changed and leaves it).
        inspection = await removal._inspector(self.host._listings(), mode, limits).check(
            accepted, walk_folders=True, listed=listed, share_budget=True
        )
        for path, reason in refused.items():
            self._exception(RemoveItem(path=path, status="refused", reason=reason))
        await self._into_plan(accepted, inspection, writer, covers)
        return inspection.entries_read

    async def _read_folders(self, mode: RemoveMode, writer: PlanWriter, limits: WalkLimits) -> int:
        """Reads on the trees of folders matched earlier (this call or one before) and not read whole then."""
        pending, self.folder_walks = self.folder_walks, {}
        walks = {path: TreeWalk.from_json(state) for path, (state, _) in pending.items() if state is not None}
        covers = {path: int(count) for path, (_, count) in pending.items() if count}
        # Screened again: the policy may have changed since the call that matched them.
        _, refused, accepted = self.removal._screen(list(pending))
        for path, reason in refused.items():
            self._exception(RemoveItem(path=path, status="refused", reason=reason))
        inspector = self.removal._inspector(self.host._listings(), mode, limits, walks)
        inspection = await inspector.check(accepted, walk_folders=True, share_budget=True)
        await self._into_plan(accepted, inspection, writer, covers)
        return inspection.entries_read

    async def _into_plan(
        self, accepted: list[str], inspection: Inspection, writer: PlanWriter, covers: dict[str, int]
    ) -> None:
        """Each looked-up path into the rows and the tally, or the exceptions; a folder not read whole within
        this call's budget is kept to read on (`folder_walks`), in no list yet. `covers`: how many matches each
        matched folder covers (counted when it is planned)."""
        tally = self.tally
        for path in accepted:
            seen = inspection.seen.get(path)
            if seen is not None and path in inspection.uncertain and self.search.matcher.filters_totals:
                reason = (
                    "its tree holds entries the server listed without a size or a time (or that are not files, folders "
                    "or links): whether it matches the selection's size or age cannot be told. Not planned: name it in "
                    "paths to remove it whole, or select what is inside it."
                )
                self._exception(RemoveItem(path=path, status="refused", reason=reason))
            elif seen is not None and (changed := self._no_longer_matching(seen)) is not None:
                self._exception(RemoveItem(path=path, status="refused", reason=changed))
            elif seen is not None:
                tally.add(item_of(seen))
                tally.count_removed(seen)
                await writer.add(seen)
                self.covered += covers.get(path, 0)
            elif path in inspection.unfinished:
                walk = inspection.unfinished[path]
                # A walk that read nothing yet is kept as its path alone (a round may leave thousands of them).
                self.folder_walks[path] = [walk.to_json() if walk.stats.entries_seen else None, covers.get(path, 0)]
            elif path in inspection.refused:
                self._exception(RemoveItem(path=path, status="refused", reason=inspection.refused[path]))
            else:
                self._exception(RemoveItem(path=path, status="missing", reason=inspection.missing.get(path)))
        await writer.flush()  # what a later call (or process) reads on from is stored

    def _no_longer_matching(self, seen: SeenPath) -> str | None:
        """Why a path looked up afresh no longer matches the selection, if it does not. The search matched a
        folder on its tree as read then; the fresh read (what the plan holds, and what execution compares) may
        have found it written to, grown, replaced by a file, or whole where the search had read it in part."""
        matcher = self.search.matcher
        depth = seen.path[len(self.select.path.rstrip("/")) + 1 :].count("/") + 1
        newest = seen.newest if seen.newest is not None else seen.mtime
        if matcher.name_matches(seen.path.rpartition("/")[2], seen.kind, depth) and matcher.totals_match(
            seen.size, newest
        ):
            return None
        return (
            f"it changed while the selection was read: as it is now (a {seen.kind}, {seen.size} bytes"
            + (f", newest change {iso_time(newest)}" if newest is not None else "")
            + ") it does not match the selection. Not planned: run the dry run again to see it as it is."
        )

    def _summary(self) -> RemoveSummary:
        covered = self.covered  # matches inside a planned folder: removed with it, not planned apart
        return self.tally.summary(requested=self.tally.items + covered, covered=covered)

    def _exception(self, item: RemoveItem) -> None:
        self.tally.add(item)
        if len(self.exceptions) < EXCEPTIONS_KEPT and self.exceptions_chars < EXCEPTIONS_CHARS:
            # Bounded in characters too: they ride in the resume state, saved and read at every call.
            reason = (item.reason or "")[:EXCEPTION_REASON_CHARS]
            self.exceptions.append([item.path, item.status, reason])
            self.exceptions_chars += len(item.path) + len(reason)

    async def _unfinished(self, writer: PlanWriter, mode: RemoveMode) -> RemovePathsResult:
        host = self.host
        self.resume_id = await host._keep_walk(self.resume_id, "dry-", False, self.to_json)
        self.settled = True
        summary = self._summary()
        stats = self.search.walk.stats
        folders = f", {len(self.folder_walks)} matched folder(s) still being read" if self.folder_walks else ""
        result = RemovePathsResult(
            dry_run=True,
            summary=summary,
            next_step=(
                f"Not read whole yet: {stats.entries_seen} entries searched so far, {writer.count} matching path(s) "
                f"planned{folders}. Call remove_paths again with resume set to this resume value (a dry run) to read "
                "on; the plan and its token come when the search is whole."
            ),
            resume=self.resume_id,
        )
        return self.tally.shape(result)

    async def _finished(self, writer: PlanWriter, mode: RemoveMode, purge: bool, stats: Any) -> RemovePathsResult:
        removal, host = self.removal, self.host
        summary = self._summary()
        token = expires_iso = None
        confirm_paths: list[str] | None = None
        audited: list[str] | None = None
        made: Plan | None = None
        freed = QuotaFreed(await host.quota_now() if writer.count else [])
        if writer.count and await host.store.load_plan(self.plan_id) is not None:
            # One plan id, one set of rows, one header: never a second token for rows another call finished.
            await removal._refuse(
                "resume", "this dry run was already finished by another call: use that call's token.", dry_run=True
            )
        if writer.count:
            now = host.clock()
            plan = Plan(
                plan_id=self.plan_id,
                expires_at=float(int(min(now + host.signer.ttl, self.rows_expire))),
                paths=[],
                select=selection_key(self.select),
                created_at=now,
                mode=mode,
                exceptions=self.exceptions,
                summary=summary.model_dump(exclude_none=True),
            )
            # The rows read back once: the policy now, what each quota entry frees, the audit's lines.
            header = Plan(plan_id=self.plan_id, expires_at=plan.expires_at, paths=[], count=writer.count)
            listed: list[str] = []
            refused_now: list[str] = []
            rows_of = plan_rows(host.store, header)
            async for rows in _or_refused(rows_of, removal):
                _, refused, _ = removal._screen([seen.path for seen in rows])
                if refused and not refused_now:
                    refused_now.append(next(iter(refused)))
                freed.add(rows)
                if writer.count <= ROWS_PER_CHUNK:
                    listed += [seen.path for seen in rows]
            if refused_now:
                # Planned by an earlier call under another policy: nothing is planned now, the person is not asked.
                await removal._refuse(
                    "policy",
                    "the path policy changed while this selection was read (a name protected or a root withdrawn): "
                    f"paths planned before are not allowed now, e.g. {display(refused_now[0])}. Nothing was planned; "
                    "run the dry run again.",
                    dry_run=True,
                )
            plan.quota = freed.before_after(mode)
            await writer.finish(plan)
            self.settled = True
            made = plan
            token, expires_iso = seal(host.signer, plan, summary)
            confirm_paths = listed if writer.count <= ITEMS_LISTED_MAX else None
            audited = listed if writer.count <= ROWS_PER_CHUNK else None
        await audit_plan(
            host.audit,
            plan_id=self.plan_id if token else None,
            mode=mode,
            select=self.select,
            removable=audited,
            count=writer.count,
            summary=summary,
            exceptions=self.exceptions,
        )
        if made is not None and writer.count > ROWS_PER_CHUNK:  # its paths after it, a line a unit of rows
            async for rows in _or_refused(verified_units(host.store, made), removal):
                await host.audit.write("plan_paths", tool=TOOL, plan_id=self.plan_id, paths=[r.path for r in rows])
        notes = []
        if not stats.complete:
            why = incomplete_reason(stats, "EFILE_WALK_MAX_ENTRIES")
            notes.append(f"The search was incomplete ({why}): there may be more matches than this plan holds.")
        if self.search.released:
            notes.append(
                f"{self.search.released} folder(s) whose name matched held more matches than a dry run keeps back "
                f"({insight.HELD_MAX:,} paths or {insight.HELD_CHARS_MAX // 1_000_000} MB of them): they are planned "
                "as their matching contents, not as whole folders."
            )
        if not self.tally.items:
            notes.append("The selection matches nothing.")
        if token is None:
            notes.append("Nothing here can be removed; see each item's status and reason.")
        else:
            notes.append(removal._next_step_planned(mode, purge, summary, expires_iso or ""))
        result = RemovePathsResult(
            dry_run=True,
            plan_id=self.plan_id if token else None,
            summary=summary,
            confirmation_token=token,
            expires_at=expires_iso,
            confirm_paths=confirm_paths,
            next_step=" ".join(notes),
        )
        return self.tally.shape(result)


async def _or_refused(rows: AsyncIterator[list[SeenPath]], removal: Removal) -> AsyncIterator[list[SeenPath]]:
    """The plan's rows read back; rows the store lost meanwhile (expired, flushed) refuse the dry run."""
    try:
        async for chunk in rows:
            yield chunk
    except LookupError:
        await removal._refuse(
            "resume",
            "the state store lost rows this dry run had planned (they expired or were flushed): nothing was planned; "
            "call remove_paths again without resume, which starts over.",
            dry_run=True,
        )
