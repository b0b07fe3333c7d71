"""The quarantine, driven directly against the sandbox over real HTTP: send, list, restore, purge, and faults.

What a person relies on: the originals are gone and the same bytes lie under the plan's folder inside
the same allowed root; restore puts every file back byte-identical (names, sizes, mtimes), leaves in
quarantine what would overwrite something, and works without the state store; purge deletes only what
expired; a path with a comma is refused, never split; a move that times out after acting, a 911021 and a
rate limit in the middle of a plan leave every path in one known state and lose nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from efile_mcp.client import EfileApi, EfileMover, EfileTransport, RetryPolicy, StaticToken
from efile_mcp.client.remover import EfileRemover
from efile_mcp.client.walk import Listings, WalkLimits
from efile_mcp.guard.audit import AuditLog
from efile_mcp.guard.inspect import Inspector
from efile_mcp.guard.paths import PathPolicy
from efile_mcp.guard.quarantine import (
    MANIFEST_SUFFIX,
    QUARANTINE_DIR,
    Quarantine,
    is_quarantine_path,
    purge_at_start,
    quarantine_refusal,
)
from efile_mcp.guard.requests import GuardRefusal
from efile_mcp.guard.seen import SeenPath
from efile_mcp.guard.store import open_store
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.sandbox.faults import FaultPlan, FaultRule

from .clocks import ManualClock as Clock

pytestmark = pytest.mark.anyio

DAY = 86400.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Rig:
    sandbox: RunningSandbox
    transport: EfileTransport
    quarantine: Quarantine
    policy: PathPolicy
    clock: Clock
    audit_path: Path

    @property
    def root(self) -> Path:
        return self.sandbox.root

    def v(self, relative: str) -> str:
        return f"{self.sandbox.home}/{relative}"

    def listings(self) -> Listings:
        return Listings(EfileApi(self.transport), concurrency=4, keep=False)

    async def seen(self, *relative: str) -> list[SeenPath]:
        paths = [self.v(r) for r in relative]
        inspection = await Inspector(
            self.listings(), self.policy, WalkLimits.starting_now(100_000, 30), links_inside="allow"
        ).check(paths, walk_folders=True)
        assert set(inspection.seen) == set(paths), (inspection.refused, inspection.missing)
        return [inspection.seen[p] for p in paths]

    def audit(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


def make_rig(sandbox: RunningSandbox, tmp_path: Path, *, store: bool = True, timeout: float = 10.0) -> Rig:
    home = sandbox.home
    policy = PathPolicy([f"{home}/scratch", f"{home}/projects", f"{home}/scratch/inner"])
    transport = EfileTransport(
        sandbox.base_url,
        StaticToken(sandbox.token),
        timeout=timeout,
        retry=RetryPolicy(attempts=4, budget=3.0, base_delay=0.01, max_delay=0.05),
        concurrency=4,
    )
    clock = Clock(1_900_000_000.0)
    audit_path = tmp_path / "state" / "audit.jsonl"
    audit_path.parent.mkdir(parents=True, exist_ok=True)
    quarantine = Quarantine(
        EfileMover(transport),
        lambda: Listings(EfileApi(transport), concurrency=4, keep=False),
        policy,
        AuditLog(audit_path),
        store=open_store(None, tmp_path / "state", clock=clock) if store else None,
        remover=EfileRemover(transport),
        days=7,
        clock=clock,
    )
    return Rig(sandbox, transport, quarantine, policy, clock, audit_path)


@pytest.fixture
async def rig(sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Rig]:
    made = make_rig(sandbox, tmp_path)
    yield made
    await made.transport.aclose()


def files_below(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every non-folder entry: sha256 (a link: its target), size, mtime (ns) — keyed by path below root."""
    found = {}
    for path in sorted(root.rglob("*")):
        if QUARANTINE_DIR in path.parts:
            continue
        info = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("->" + os.readlink(path), info.st_size, info.st_mtime_ns)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, info.st_size, info.st_mtime_ns)
    return found


def seed_extra(root: Path) -> None:
    """Same base names in two folders, a conda-like env with links inside, a nested root."""
    (root / "scratch/a").mkdir()
    (root / "scratch/b").mkdir()
    (root / "scratch/a/out.log").write_text("a's log\n")
    (root / "scratch/b/out.log").write_text("b's log, longer\n")
    env = root / "scratch/envs/old-env"
    (env / "bin").mkdir(parents=True)
    (env / "bin/python3.11").write_bytes(b"\x7fELF" + bytes(range(256)) * 10)
    (env / "bin/python").symlink_to("python3.11")
    (env / "lib").symlink_to("/usr/lib")
    (root / "scratch/inner/deep").mkdir(parents=True)
    (root / "scratch/inner/deep/x.bin").write_bytes(os.urandom(3000))
    os.utime(root / "scratch/run-001", (1_500_000_000, 1_500_000_000))


async def test_quarantine_then_restore_puts_every_byte_back(rig: Rig) -> None:
    seed_extra(rig.root)
    before = files_below(rig.root)
    run_mtime = (rig.root / "scratch/run-001").stat().st_mtime_ns
    names = ["scratch/run-001", "scratch/a/out.log", "scratch/b/out.log", "scratch/envs/old-env",
             "scratch/inner/deep/x.bin", "projects/paper (draft)/main.tex"]  # fmt: skip
    seen = await rig.seen(*names)
    items = await rig.quarantine.send("plan1", seen)
    assert {path: item.status for path, item in items.items()} == {rig.v(n): "quarantined" for n in names}
    # The originals are gone; the same bytes lie under the plan's folder in each path's own (innermost) root.
    for name in names:
        assert not (rig.root / name).exists()
    q = {
        "scratch": rig.root / "scratch" / QUARANTINE_DIR / "plan1",
        "inner": rig.root / "scratch/inner" / QUARANTINE_DIR / "plan1",
        "projects": rig.root / "projects" / QUARANTINE_DIR / "plan1",
    }
    assert (q["inner"] / "deep/x.bin").exists()  # the nested root keeps its own: no data crosses a root
    assert (q["projects"] / "paper (draft)/main.tex").exists()
    for relative, fingerprint in before.items():
        top, _, rest = relative.partition("/")
        if any(relative == n or relative.startswith(n + "/") for n in names):
            place = (q["inner"] / rest.removeprefix("inner/")) if rest.startswith("inner/") else q[top] / rest
            info = place.lstat()
            if place.is_symlink():
                assert ("->" + os.readlink(place), info.st_size, info.st_mtime_ns) == fingerprint
            else:
                digest = hashlib.sha256(place.read_bytes()).hexdigest()
                assert (digest, info.st_size, info.st_mtime_ns) == fingerprint, relative
    assert (q["scratch"] / "a/out.log").read_text() == "a's log\n"  # same base names, distinct sub-folders
    assert (q["scratch"] / "b/out.log").read_text() == "b's log, longer\n"
    assert (q["scratch"] / "run-001").stat().st_mtime_ns == run_mtime  # a folder moved whole keeps its mtime
    manifest = json.loads((rig.root / "scratch" / QUARANTINE_DIR / ("plan1" + MANIFEST_SUFFIX)).read_text())
    assert manifest["plan_id"] == "plan1"
    # The entries are in the manifest's parts (a part per send), files beside it that the manifest names.
    parts = [json.loads((rig.root / "scratch" / QUARANTINE_DIR / name).read_text()) for name in manifest["parts"]]
    assert {e["path"] for part in parts for e in part["entries"]} == {
        rig.v(n) for n in names if n.startswith("scratch/") and not n.startswith("scratch/inner/")
    }

    status = await rig.quarantine.status()
    assert status.plan_count == 3 and status.total_count == len(names)
    assert status.total_size == sum(s.size for s in seen) > 0
    assert {p.root for p in status.plans} == {rig.v("scratch"), rig.v("scratch/inner"), rig.v("projects")}
    assert all(not p.expired for p in status.plans)

    result = await rig.quarantine.restore("plan1")
    assert result.summary.restored == len(names) and result.summary.conflict == 0, result
    assert files_below(rig.root) == before
    assert (rig.root / "scratch/run-001").stat().st_mtime_ns == run_mtime
    assert [r["decision"] for r in rig.audit() if r["event"] == "restore"] == ["intent", "executed"]
    after = await rig.quarantine.status()
    assert after.total_count == 0 and after.plan_count == 0  # emptied plan folders (and manifests) are gone
    assert not (rig.root / "scratch" / QUARANTINE_DIR / "plan1").exists()
    assert not (rig.root / "scratch" / QUARANTINE_DIR / ("plan1" + MANIFEST_SUFFIX)).exists()


async def test_restore_leaves_a_conflicting_path_in_quarantine(rig: Rig) -> None:
    seen = await rig.seen("scratch/tmp.log", "scratch/run-002")
    original = (rig.root / "scratch/tmp.log").read_bytes()
    await rig.quarantine.send("plan2", seen)
    (rig.root / "scratch/tmp.log").write_text("a new file, made after the removal\n")
    result = await rig.quarantine.restore("plan2")
    by_path = {item.path: item for item in result.items or ()}
    assert by_path[rig.v("scratch/tmp.log")].status == "conflict"
    assert by_path[rig.v("scratch/run-002")].status == "restored"
    assert (rig.root / "scratch/tmp.log").read_text() == "a new file, made after the removal\n"  # not overwritten
    kept = rig.root / "scratch" / QUARANTINE_DIR / "plan2/tmp.log"
    assert kept.read_bytes() == original  # and the plan's folder stays while it holds something
    # Once the person moves the new file away, the conflict restores.
    (rig.root / "scratch/tmp.log").unlink()
    again = await rig.quarantine.restore("plan2", [rig.v("scratch/tmp.log")])
    assert again.summary.restored == 1
    assert (rig.root / "scratch/tmp.log").read_bytes() == original


async def test_restore_works_without_the_state_store(sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The layout alone says where everything came from: a lost state store loses nothing."""
    seed_extra(sandbox.root)
    before = files_below(sandbox.root)
    writer = make_rig(sandbox, tmp_path / "one")
    seen = await writer.seen("scratch/a/out.log", "scratch/b/out.log", "scratch/run-001")
    await writer.quarantine.send("plan3", seen)
    await writer.transport.aclose()
    (tmp_path / "two").mkdir()
    reader = make_rig(sandbox, tmp_path / "two", store=False)
    status = await reader.quarantine.status()
    held = [p for p in (sandbox.root / "scratch" / QUARANTINE_DIR / "plan3").rglob("*") if p.is_file()]
    assert status.plan_count == 1 and status.plans[0].count == len(held) > 3  # files, measured by walking
    result = await reader.quarantine.restore("plan3")
    assert result.summary.conflict == 0 and result.summary.failed == 0
    assert files_below(sandbox.root) == before
    await reader.transport.aclose()


async def test_a_path_with_a_comma_is_refused_never_split(rig: Rig) -> None:
    (rig.root / "scratch/a,b.txt").write_text("comma\n")
    (rig.root / "scratch/a").mkdir()
    (rig.root / "scratch/b.txt").write_text("would be taken by a split\n")
    assert quarantine_refusal(rig.v("scratch/a,b.txt")) is not None
    seen = await rig.seen("scratch/a,b.txt", "scratch/tmp.log")
    rig.sandbox.sandbox.reset_records()
    items = await rig.quarantine.send("plan4", seen)
    assert items[rig.v("scratch/a,b.txt")].status == "failed"
    assert "comma" in (items[rig.v("scratch/a,b.txt")].reason or "")
    assert items[rig.v("scratch/tmp.log")].status == "quarantined"
    assert (rig.root / "scratch/a,b.txt").read_text() == "comma\n"
    assert (rig.root / "scratch/b.txt").exists() and (rig.root / "scratch/a").is_dir()
    assert all("," not in move.source for move in rig.sandbox.sandbox.moves)


def test_quarantine_paths_are_recognised() -> None:
    assert is_quarantine_path(f"/h/scratch/{QUARANTINE_DIR}/p/x")
    assert is_quarantine_path(f"/h/scratch/{QUARANTINE_DIR}")
    assert not is_quarantine_path("/h/scratch/.efile-quarantine-not/x")
    assert quarantine_refusal(f"/h/scratch/{QUARANTINE_DIR}/p") is not None


async def test_restore_of_an_unknown_plan_is_a_clear_refusal(rig: Rig) -> None:
    with pytest.raises(GuardRefusal, match="storage_status"):
        await rig.quarantine.restore("nothing-here")
    with pytest.raises(GuardRefusal):
        await rig.quarantine.restore("../../etc")


async def test_purge_deletes_only_expired_plans(rig: Rig) -> None:
    await rig.quarantine.send("old", await rig.seen("scratch/tmp.log"))
    rig.clock.now += 8 * DAY
    await rig.quarantine.send("new", await rig.seen("scratch/run-002"))
    dry = await rig.quarantine.purge(dry_run=True)
    assert [p.plan_id for p in dry.expired] == ["old"] and dry.kept == 1
    assert (rig.root / "scratch" / QUARANTINE_DIR / "old").exists()  # a dry run deletes nothing
    report = await rig.quarantine.purge(dry_run=False)
    assert report.outcomes == {rig.v(f"scratch/{QUARANTINE_DIR}/old"): "removed"}
    assert not (rig.root / "scratch" / QUARANTINE_DIR / "old").exists()
    assert not (rig.root / "scratch" / QUARANTINE_DIR / ("old" + MANIFEST_SUFFIX)).exists()
    assert (rig.root / "scratch" / QUARANTINE_DIR / "new/run-002/stdout.log").exists()
    expired = [r for r in rig.audit() if r["event"] == "expired"]
    assert [r["decision"] for r in expired] == ["intent", "executed"]
    assert "purged" in " ".join(report.lines()) or "deleted" in " ".join(report.lines())


# -- faults: every path ends in one known state, nothing is lost ---------------------------------------


def everything(root: Path) -> set[tuple[str, int]]:
    """Every file's (name, size) wherever it lies, the quarantine included: nothing may be lost."""
    return {(p.name, p.stat().st_size) for p in root.rglob("*") if p.is_file() and not p.name.endswith(MANIFEST_SUFFIX)}


@pytest.fixture
def many_files(sandbox: RunningSandbox) -> Iterator[list[str]]:
    folder = sandbox.root / "scratch/many"
    folder.mkdir()
    for i in range(250):
        (folder / f"f{i:03d}.dat").write_bytes(b"x" * i)
    yield [f"scratch/many/f{i:03d}.dat" for i in range(250)]


async def test_a_move_that_times_out_after_acting_is_reconciled_by_listing(
    sandbox: RunningSandbox, tmp_path: Path, many_files: list[str]
) -> None:
    rig = make_rig(sandbox, tmp_path, timeout=0.5)
    seen = await rig.seen(*many_files)
    kept = everything(rig.root)
    sandbox.sandbox.faults = FaultPlan([FaultRule("late_answer", endpoint="move", seconds=1.0, burst=1)])
    sandbox.sandbox.reset_records()
    items = await rig.quarantine.send("late", seen)
    assert {item.status for item in items.values()} == {"quarantined"}
    assert sandbox.sandbox.request_counts["move"] == 3  # 250 paths in 3 batches: the late one was never resent
    assert everything(rig.root) == kept
    await rig.transport.aclose()


async def test_a_911021_in_a_batch_isolates_the_one_path(rig: Rig, many_files: list[str]) -> None:
    seen = await rig.seen(*many_files[:20])
    taken = rig.root / "scratch" / QUARANTINE_DIR / "clash/many"
    taken.mkdir(parents=True)
    (taken / "f007.dat").write_text("already in quarantine\n")
    kept = everything(rig.root)
    items = await rig.quarantine.send("clash", seen)
    statuses = {path.rpartition("/")[2]: item.status for path, item in items.items()}
    assert statuses.pop("f007.dat") == "failed"
    assert set(statuses.values()) == {"quarantined"}
    assert (rig.root / "scratch/many/f007.dat").exists()  # still where it was
    assert everything(rig.root) == kept


async def test_a_rate_limit_mid_plan_is_retried_or_reported_never_lost(rig: Rig, many_files: list[str]) -> None:
    seen = await rig.seen(*many_files)
    kept = everything(rig.root)
    rig.sandbox.sandbox.faults = FaultPlan([FaultRule("rate_limit", endpoint="move", skip=1, burst=2)])
    items = await rig.quarantine.send("busy", seen[:150])
    assert {item.status for item in items.values()} == {"quarantined"}
    # A rate limit that outlasts the retry budget: turned away, so still in place, said so.
    rig.sandbox.sandbox.faults = FaultPlan([FaultRule("rate_limit", endpoint="move")])
    items = await rig.quarantine.send("busier", seen[150:])
    assert {item.status for item in items.values()} == {"failed"}
    assert all("still where it was" in (item.reason or "") for item in items.values())
    assert all((rig.root / name).exists() for name in many_files[150:])
    assert everything(rig.root) == kept
    # The plan holds nothing in quarantine, and says so: nothing of it to restore.
    status = await rig.quarantine.status()
    assert [p.count for p in status.plans if p.plan_id == "busier"] in ([], [0])
    rig.sandbox.sandbox.faults = None
    assert (await rig.quarantine.restore("busy")).summary.restored == 150


async def test_start_up_logs_a_dry_run_then_purges_only_expired(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    await rig.quarantine.send("old", await rig.seen("scratch/tmp.log"))
    rig.clock.now += 8 * DAY
    await rig.quarantine.send("new", await rig.seen("scratch/run-002"))
    caplog.set_level("INFO", logger="efile_mcp.guard.quarantine")
    read_only = await purge_at_start(rig.quarantine, read_only=True)
    assert read_only is not None and read_only.dry_run
    assert (rig.root / "scratch" / QUARANTINE_DIR / "old").exists()  # read-only: only the dry run, logged
    assert any("(dry run)" in r.message and "/old" in r.message for r in caplog.records)
    report = await purge_at_start(rig.quarantine, read_only=False)
    assert report is not None and not report.dry_run
    assert not (rig.root / "scratch" / QUARANTINE_DIR / "old").exists()
    assert (rig.root / "scratch" / QUARANTINE_DIR / "new").exists()
    assert [r["tool"] for r in rig.audit() if r["event"] == "expired"] == ["start-up", "start-up"]


async def test_something_appearing_as_a_restore_lands_is_a_conflict_and_stays(rig: Rig) -> None:
    """The race between the restore's look and its move: uncover makes the storage refuse (911021), and the
    entry stays in quarantine, reported as a conflict."""
    await rig.quarantine.send("race", await rig.seen("scratch/tmp.log", "scratch/run-002/stdout.log"))
    original = rig.root / "scratch/tmp.log"

    async def someone_writes_first(name: str, request: object) -> None:
        if name == "move" and not original.exists():
            original.write_text("written by someone else just now\n")

    rig.sandbox.sandbox.fault = someone_writes_first  # type: ignore[assignment]
    result = await rig.quarantine.restore("race")
    by_path = {item.path: item.status for item in result.items or ()}
    assert by_path == {rig.v("scratch/tmp.log"): "conflict", rig.v("scratch/run-002/stdout.log"): "restored"}
    assert original.read_text() == "written by someone else just now\n"
    assert (rig.root / "scratch" / QUARANTINE_DIR / "race/tmp.log").exists()
    assert [r["reason"] for r in rig.audit() if r["event"] == "refusal"] == []


async def test_a_restore_whose_answer_is_lost_is_reconciled_by_listing(rig: Rig) -> None:
    await rig.quarantine.send("lost", await rig.seen("scratch/tmp.log", "scratch/run-001"))
    rig.sandbox.sandbox.faults = FaultPlan([FaultRule("lose_answer", endpoint="move", burst=1)])
    rig.sandbox.sandbox.reset_records()
    result = await rig.quarantine.restore("lost")
    assert result.summary.restored == 2, result
    assert rig.sandbox.sandbox.request_counts["move"] == 1  # the lost move was listed, not sent again
    assert (rig.root / "scratch/tmp.log").exists() and (rig.root / "scratch/run-001/stdout.log").exists()


async def test_restoring_an_unknown_plan_is_audited(rig: Rig) -> None:
    with pytest.raises(GuardRefusal):
        await rig.quarantine.restore("never-quarantined")
    refusals = [r for r in rig.audit() if r["event"] == "refusal"]
    assert refusals and refusals[-1]["tool"] == "restore_paths" and refusals[-1]["plan_id"] == "never-quarantined"


async def test_restore_never_puts_anything_under_a_protected_name(rig: Rig) -> None:
    """restore_paths asks no one: what is placed in a plan's folder must not land in `.ssh` of the root."""
    await rig.quarantine.send("planted", await rig.seen("scratch/tmp.log"))
    planted = rig.root / "scratch" / QUARANTINE_DIR / "planted/.ssh"
    planted.mkdir()
    (planted / "authorized_keys").write_text("ssh-ed25519 AAAA someone\n")
    named = await rig.quarantine.restore("planted", [rig.v("scratch/.ssh/authorized_keys")])
    assert named.summary.failed == 1 and "protected" in (named.items or [])[0].reason  # type: ignore[operator]
    whole = await rig.quarantine.restore("planted")
    assert not (rig.root / "scratch/.ssh").exists()
    assert whole.summary.restored == 1 and (rig.root / "scratch/tmp.log").exists()


async def test_restore_refuses_a_path_with_dot_dot_before_moving_anything(rig: Rig) -> None:
    await rig.quarantine.send("dots", await rig.seen("scratch/run-001"))
    rig.sandbox.sandbox.reset_records()
    with pytest.raises(GuardRefusal, match="Nothing was restored"):
        await rig.quarantine.restore("dots", [rig.v("scratch/x/../../projects/run-001"), rig.v("scratch/run-001")])
    assert rig.sandbox.sandbox.moves == [] and not (rig.root / "scratch/run-001").exists()


async def test_an_expired_plan_holding_links_is_not_purged_unless_links_inside_is_remove(rig: Rig) -> None:
    env = rig.root / "scratch/envs/old-env"
    (env / "bin").mkdir(parents=True)
    (env / "bin/python3.11").write_bytes(b"\x7fELF")
    (env / "lib").symlink_to(rig.root / "projects")
    await rig.quarantine.send("links", await rig.seen("scratch/envs/old-env"))
    rig.clock.advance(8 * DAY)
    report = await rig.quarantine.purge(dry_run=False)
    held = rig.root / "scratch" / QUARANTINE_DIR / "links"
    assert held.is_dir() and not report.expired
    assert any("EFILE_LINKS_INSIDE=remove" in line for line in report.lines())
    rig.quarantine.links_inside = "remove"
    report = await rig.quarantine.purge(dry_run=False)
    assert [p.plan_id for p in report.expired] == ["links"] and not held.exists()
    assert (rig.root / "projects/paper (draft)/main.tex").exists()  # the link's target is untouched


async def test_a_quarantine_folder_swapped_for_a_link_is_never_used(rig: Rig) -> None:
    """A link at <root>/.efile-quarantine would carry moves, restores and purges wherever it points."""
    await rig.quarantine.send("before", await rig.seen("scratch/tmp.log"))
    real = rig.root / "scratch" / QUARANTINE_DIR
    real.rename(rig.root / "scratch/moved-away")
    target = rig.root / "projects"
    (target / "old-folder").mkdir()
    os.utime(target / "old-folder", (1_000_000_000, 1_000_000_000))
    real.symlink_to(target)
    before = files_below(target)
    items = await rig.quarantine.send("after", await rig.seen("scratch/run-002"))
    assert items[rig.v("scratch/run-002")].status == "failed" and (rig.root / "scratch/run-002").is_dir()
    rig.clock.advance(30 * DAY)
    report = await rig.quarantine.purge(dry_run=False)
    assert not report.expired and report.error and "not a folder" in report.error
    assert (target / "old-folder").is_dir() and files_below(target) == before
    with pytest.raises(GuardRefusal):
        await rig.quarantine.restore("old-folder")
    assert (target / "old-folder").is_dir()


async def test_a_link_placed_alone_in_a_plan_folder_is_not_restored(rig: Rig) -> None:
    await rig.quarantine.send("alone", await rig.seen("scratch/tmp.log"))
    (rig.root / "scratch" / QUARANTINE_DIR / "alone/escape").symlink_to("/etc")
    result = await rig.quarantine.restore("alone", [rig.v("scratch/escape"), rig.v("scratch/tmp.log")])
    by_path = {item.path: item.status for item in result.items or ()}
    assert by_path == {rig.v("scratch/escape"): "failed", rig.v("scratch/tmp.log"): "restored"}
    assert not (rig.root / "scratch/escape").is_symlink()


@pytest.mark.parametrize("planted", ["plan folder", "folder inside it"])
async def test_a_plan_folder_prepared_with_a_link_carries_nothing_out(rig: Rig, planted: str) -> None:
    """The dry run names the plan id: something may prepare <root>/.efile-quarantine/<plan id> before the
    execution. A link there, or in a folder on the way to a target, must not carry data out of the root."""
    elsewhere = rig.root / "projects/elsewhere"
    elsewhere.mkdir()
    quarantine = rig.root / "scratch" / QUARANTINE_DIR
    quarantine.mkdir()
    if planted == "plan folder":
        (quarantine / "prepared").symlink_to(elsewhere)
    else:
        (quarantine / "prepared").mkdir()
        (quarantine / "prepared/run-002").symlink_to(elsewhere)
    seen = await rig.seen("scratch/run-002/stdout.log", "scratch/tmp.log")
    items = await rig.quarantine.send("prepared", seen)
    assert list(elsewhere.iterdir()) == []
    assert items[rig.v("scratch/run-002/stdout.log")].status == "failed"
    assert (rig.root / "scratch/run-002/stdout.log").exists()
    expected_tmp = "failed" if planted == "plan folder" else "quarantined"
    assert items[rig.v("scratch/tmp.log")].status == expected_tmp
