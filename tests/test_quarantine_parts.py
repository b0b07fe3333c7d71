"""The quarantine of a plan sent in batches keeps its record and manifest in parts (guard/quarantine.py).

What a person (and an HPC admin) relies on, against the sandbox over real HTTP, with SQLite and a real
redis-server: a plan executed in several batches shows its exact totals in storage_status; a restore of
everything, or of chosen paths, puts every file back with its content; a purge leaves neither a manifest part
nor a row of the plan in the state store; a batch sent again by a resumed execution leaves one part and the
right totals; no value written to the state store and no manifest uploaded grows with the plan; and a plan
quarantined by the previous version (one record value, one manifest with every entry) is still listed,
restored and purged.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from efile_mcp.guard import execution
from efile_mcp.guard.quarantine import (
    MANIFEST_SUFFIX,
    QUARANTINE_DIR,
    PlanHeader,
    Quarantine,
)
from efile_mcp.guard.seen import SeenPath
from efile_mcp.guard.store import RedisStore, SqliteStore, StateStore, open_store
from efile_mcp.models.results import RemoveItem, Selection
from efile_mcp.sandbox import RunningSandbox

from .redis_server import RedisServer
from .test_quarantine import Rig, files_below, make_rig
from .test_removal import FakeClient, World, request
from .test_removal import world as world  # the fixture
from .test_store import redis_server as redis_server  # the fixture

pytestmark = pytest.mark.anyio

DAY = 86400.0
FILES = 250
BATCH = 100


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "redis"])
async def rig(request: pytest.FixtureRequest, sandbox: RunningSandbox, tmp_path: Path) -> AsyncIterator[Rig]:
    made = make_rig(sandbox, tmp_path)
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        assert made.quarantine.store is not None
        await made.quarantine.store.aclose()
        store = open_store(server.url, None, clock=made.clock)
        assert isinstance(store, RedisStore)
        store.prefix = f"efile-mcp:test:{request.node.name}:{time.time_ns()}:"
        made.quarantine.store = store
    yield made
    await made.transport.aclose()
    if made.quarantine.store is not None:
        await made.quarantine.store.aclose()


def make_files(root: Path, folder: str = "scratch/batch", count: int = FILES) -> list[str]:
    """`count` files of distinct sizes and contents, in two sub-folders (so a part holds several target folders)."""
    names = []
    for i in range(count):
        name = f"{folder}/{'even' if i % 2 == 0 else 'odd'}/f{i:03d}.out"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {i}\n".encode() * (i + 1))
        names.append(name)
    return names


async def send_in_batches(rig: Rig, plan_id: str, seen: Sequence[SeenPath], size: int = BATCH) -> None:
    """What an execution does: one send per batch, numbered."""
    for number, first in enumerate(range(0, len(seen), size)):
        items = await rig.quarantine.send(plan_id, seen[first : first + size], batch=number)
        assert {item.status for item in items.values()} == {"quarantined"}


def quarantine_files(root: Path, folder: str = "scratch") -> list[str]:
    """The names of the files beside the plan folders in the root's quarantine (manifests and their parts)."""
    there = root / folder / QUARANTINE_DIR
    return sorted(p.name for p in there.iterdir() if p.is_file()) if there.exists() else []


def manifest_entries(root: Path, plan_id: str, folder: str = "scratch") -> list[list[dict[str, Any]]]:
    """The entries of each part the plan's manifest names, in its order."""
    there = root / folder / QUARANTINE_DIR
    manifest = json.loads((there / (plan_id + MANIFEST_SUFFIX)).read_text())
    return [json.loads((there / name).read_text())["entries"] for name in manifest["parts"]]


async def stored_keys(store: StateStore, plan_id: str) -> list[str]:
    """Every key of the state store that names the plan (its quarantine record's header and parts)."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as db:
            rows = db.execute("SELECT plan_id FROM plans WHERE instr(plan_id, ?) > 0", (plan_id,)).fetchall()
        return sorted(str(row[0]) for row in rows)
    assert isinstance(store, RedisStore)
    keys = [key async for key in store._redis.scan_iter(count=1000)]  # the prefix may hold glob characters
    found = [key.decode() if isinstance(key, bytes) else str(key) for key in keys]
    return sorted(key for key in found if key.startswith(store.prefix) and plan_id in key)


async def header(rig: Rig, plan_id: str) -> PlanHeader:
    assert rig.quarantine.store is not None
    data = await rig.quarantine.store.load_plan("quarantine-" + plan_id)
    assert data is not None
    return PlanHeader.from_bytes(data)


class Recorder:
    """Every value written to the state store and every manifest uploaded (their sizes and entry counts)."""

    def __init__(self, quarantine: Quarantine) -> None:
        self.values: list[int] = []
        self.uploads: list[tuple[str, int, int]] = []  # name, bytes, entries
        store, mover = quarantine.store, quarantine.mover
        assert store is not None
        save_plan, upload = store.save_plan, mover.upload

        async def saving(plan_id: str, data: bytes, expires_at: float) -> None:
            self.values.append(len(data))
            await save_plan(plan_id, data, expires_at)

        async def uploading(folder: str, name: str, content: bytes, **options: Any) -> None:
            self.uploads.append((name, len(content), len(json.loads(content).get("entries", ()))))
            await upload(folder, name, content, **options)

        store.save_plan = saving  # type: ignore[method-assign]
        mover.upload = uploading  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------------ sent in parts


async def test_a_plan_sent_in_batches_is_listed_whole_and_no_write_grows_with_it(rig: Rig) -> None:
    names = make_files(rig.root)
    seen = await rig.seen(*names)
    recorder = Recorder(rig.quarantine)
    await send_in_batches(rig, "big", seen)
    status = await rig.quarantine.status()
    assert status.plan_count == 1 and status.plans[0].plan_id == "big" and status.plans[0].exact
    assert status.total_count == FILES and status.total_size == sum(s.size for s in seen)
    # One part per batch, each with that batch's rows; the manifest names them, every entry once.
    parts = manifest_entries(rig.root, "big")
    assert [len(entries) for entries in parts] == [100, 100, 50]
    listed = [e["path"] for entries in parts for e in entries]
    assert sorted(listed) == sorted(rig.v(n) for n in names)
    assert quarantine_files(rig.root) == [
        "big.manifest.json",
        "big.part-b000000.manifest.json",
        "big.part-b000001.manifest.json",
        "big.part-b000002.manifest.json",
    ]
    record = await header(rig, "big")
    assert sorted(record.parts) == ["b000000", "b000001", "b000002"]
    assert record.totals() == {rig.v("scratch"): [FILES, sum(s.size for s in seen), FILES]}
    # Nothing written grows with the plan: no state value holds more than a batch's rows, no upload more
    # than a batch's entries (the record and the manifest used to be rewritten whole at every batch).
    one_row = len(json.dumps([rig.v(names[-1]), "file", 10_000, 1]))
    assert max(recorder.values) < BATCH * one_row * 1.2
    assert max(entries for _, _, entries in recorder.uploads) == BATCH
    assert sum(entries for _, _, entries in recorder.uploads) == FILES  # each entry uploaded once
    assert all(size < 4096 for name, size, _ in recorder.uploads if name == "big" + MANIFEST_SUFFIX)


async def test_restoring_a_plan_in_parts_puts_every_file_back_and_forgets_it(rig: Rig) -> None:
    before = files_below(rig.root)
    names = make_files(rig.root)
    with_files = files_below(rig.root)
    seen = await rig.seen(*names)
    await send_in_batches(rig, "whole", seen)
    assert files_below(rig.root) == before
    result = await rig.quarantine.restore("whole")
    assert result.summary.restored == FILES and result.summary.requested == FILES
    assert result.items is None and result.exceptions == []  # too many to list; none went wrong
    assert files_below(rig.root) == with_files  # every file back, same bytes, sizes and times
    status = await rig.quarantine.status()
    assert status.plan_count == 0 and status.total_count == 0
    assert quarantine_files(rig.root) == []  # the manifest and every part of it went with the folder
    assert not (rig.root / "scratch" / QUARANTINE_DIR / "whole").exists()
    assert rig.quarantine.store is not None
    assert await stored_keys(rig.quarantine.store, "whole") == []  # restored whole: nothing left of it
    executed = [r for r in rig.audit() if r["event"] == "restore" and r["decision"] == "executed"]
    assert len(executed[0]["items"]) == FILES and {i["status"] for i in executed[0]["items"]} == {"restored"}


async def test_restoring_chosen_paths_takes_them_out_of_their_parts_only(rig: Rig) -> None:
    names = make_files(rig.root)
    seen = await rig.seen(*names)
    await send_in_batches(rig, "some", seen)
    chosen = [names[3], names[150], names[249]]  # in parts 0, 1 and 2
    result = await rig.quarantine.restore("some", [rig.v(n) for n in chosen])
    assert result.summary.restored == 3 and [i.status for i in result.items or ()] == ["restored"] * 3
    for name in chosen:
        index = int(name[-7:-4])
        assert (rig.root / name).read_bytes() == f"file {index}\n".encode() * (index + 1)
    status = await rig.quarantine.status()
    size = sum(s.size for s in seen) - sum(s.size for s in seen if s.path in {rig.v(n) for n in chosen})
    assert status.total_count == FILES - 3 and status.total_size == size
    record = await header(rig, "some")
    assert {name: counts[rig.v("scratch")][0] for name, counts in record.parts.items()} == {
        "b000000": 99,
        "b000001": 99,
        "b000002": 49,
    }
    # The rest comes back with a restore of the whole plan, each file once.
    rest = await rig.quarantine.restore("some")
    assert rest.summary.restored == FILES - 3 and rest.summary.missing == 0
    assert all((rig.root / name).exists() for name in names)


async def test_a_part_the_state_store_lost_is_restored_from_the_layout_and_said(rig: Rig) -> None:
    """A part of the record evicted from the store: the restore of the whole plan brings back the rest from the
    record, then what is still in the plan's folder from the layout alone, and says how many came back so."""
    names = make_files(rig.root)
    await send_in_batches(rig, "lossy", await rig.seen(*names))
    assert rig.quarantine.store is not None
    await rig.quarantine.store.drop_plans(["quarantine-lossy-part-b000001"])
    result = await rig.quarantine.restore("lossy")
    assert result.summary.restored == 250 and "100 of them were in the plan's folder without" in result.next_step
    assert all((rig.root / n).exists() for n in names)
    assert not (rig.root / "scratch" / QUARANTINE_DIR / "lossy").exists()


async def test_paths_a_lost_part_named_are_restored_by_the_manifest_parts(rig: Rig) -> None:
    """The manifest's parts list a lost part's paths: restoring them by name brings them back."""
    names = make_files(rig.root)
    await send_in_batches(rig, "lossy", await rig.seen(*names))
    assert rig.quarantine.store is not None
    await rig.quarantine.store.drop_plans(["quarantine-lossy-part-b000001"])
    listed = manifest_entries(rig.root, "lossy")[1]
    again = await rig.quarantine.restore("lossy", [entry["path"] for entry in listed])
    assert again.summary.restored == 100 and sum((rig.root / n).exists() for n in names) == 100


async def test_a_chosen_folder_is_restored_by_what_every_part_recorded(rig: Rig) -> None:
    """A restore of a chosen folder merges the folders made to hold entries, and leaves in quarantine an entry
    quarantined whole whose path exists again: which is which, it reads in every part (here the second)."""
    names = make_files(rig.root, count=10)
    evens = await rig.seen(*[n for n in names if "/even/" in n])
    await rig.quarantine.send("chosen", evens, batch=0)
    await rig.quarantine.send("chosen", await rig.seen("scratch/batch/odd"), batch=1)
    (rig.root / "scratch/batch/odd").mkdir()  # made again since, with new content
    (rig.root / "scratch/batch/odd/new.txt").write_text("new\n")
    result = await rig.quarantine.restore("chosen", [rig.v("scratch/batch")])
    by_path = {item.path: item.status for item in result.items or ()}
    assert by_path.pop(rig.v("scratch/batch/odd")) == "conflict"  # never merged into the new folder
    assert set(by_path.values()) == {"restored"} and len(by_path) == 5
    assert sorted(p.name for p in (rig.root / "scratch/batch/odd").iterdir()) == ["new.txt"]
    assert (rig.root / "scratch" / QUARANTINE_DIR / "chosen/batch/odd/f001.out").exists()
    assert all((rig.root / n).exists() for n in names if "/even/" in n)
    assert (await rig.quarantine.status()).total_count == 1  # the folder, still in its part


# ------------------------------------------------------------------------------------------------ a batch sent again


async def test_a_batch_sent_again_replaces_its_part_keeping_what_was_moved_before(rig: Rig) -> None:
    names = make_files(rig.root, count=30)
    seen = await rig.seen(*names)
    await rig.quarantine.send("again", seen[:10], batch=0)
    # The first run of batch 1 moved half of it, and its replica died; the resumed run finds that half gone
    # (its re-check calls it missing) and sends the other half, as batch 1 again.
    await rig.quarantine.send("again", seen[10:20], batch=1)
    await rig.quarantine.send("again", seen[20:30], batch=1)
    record = await header(rig, "again")
    assert sorted(record.parts) == ["b000000", "b000001"]
    assert record.totals()[rig.v("scratch")][:2] == [30, sum(s.size for s in seen)]
    status = await rig.quarantine.status()
    assert status.total_count == 30 and status.total_size == sum(s.size for s in seen)
    parts = manifest_entries(rig.root, "again")
    assert [len(entries) for entries in parts] == [10, 20]
    # Five of them put back by hand, then the same batch sent a third time with them: still once each.
    for name in names[20:25]:
        (rig.root / "scratch" / QUARANTINE_DIR / "again" / name.removeprefix("scratch/")).rename(rig.root / name)
    await rig.quarantine.send("again", await rig.seen(*names[20:25]), batch=1)
    assert (await rig.quarantine.status()).total_count == 30
    assert [len(entries) for entries in manifest_entries(rig.root, "again")] == [10, 20]
    result = await rig.quarantine.restore("again")
    assert result.summary.restored == 30 and all((rig.root / n).exists() for n in names)


async def test_a_send_without_a_batch_number_adds_a_part_and_takes_its_paths_out_of_earlier_ones(rig: Rig) -> None:
    names = make_files(rig.root, count=6)
    seen = await rig.seen(*names)
    await rig.quarantine.send("plain", seen[:3])
    first = rig.root / names[0]
    # The same path comes back and is sent again, by a caller without batch numbers.
    quarantined = rig.root / "scratch" / QUARANTINE_DIR / "plain" / names[0].removeprefix("scratch/")
    quarantined.rename(first)
    await rig.quarantine.send("plain", [seen[0], *seen[3:]])
    record = await header(rig, "plain")
    assert sorted(record.parts) == ["s000001", "s000002"]
    assert record.totals()[rig.v("scratch")][0] == 6  # names[0] once, in the later part
    assert sorted(len(e) for e in manifest_entries(rig.root, "plain")) == [2, 4]


async def test_a_resumed_execution_in_quarantine_mode_neither_duplicates_nor_loses_rows(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the execution: the first replica dies half-way through its second batch; the resumed run sends the
    rest, batch by batch. One part per batch, the exact totals, and a restore of all of it."""
    monkeypatch.setattr(execution, "BATCH_ROWS", BATCH)
    names = make_files(world.sandbox.root)
    home = world.sandbox.home
    quarantine = world.guard.quarantine

    class DiesInBatchTwo:
        async def send(
            self, plan_id: str, paths: Sequence[SeenPath], progress: Any = None, *, batch: int | None = None
        ) -> dict[str, RemoveItem]:
            if batch == 1:
                await quarantine.send(plan_id, paths[: len(paths) // 2], batch=batch)
                raise RuntimeError("the replica died")
            return await quarantine.send(plan_id, paths, progress, batch=batch)

    selection = Selection(path=f"{home}/scratch/batch", name="*.out", type="file")
    dying = world.removal(confirm="token", default_mode="quarantine", quarantine=DiesInBatchTwo())
    preview = await dying.preview(None, selection, mode="quarantine")
    plan_id = preview.plan_id or ""
    assert preview.summary.would_remove == FILES
    with pytest.raises(RuntimeError):
        await dying.execute(request(preview), FakeClient())
    world.clock.advance(60)  # its lease ran out
    resumed = world.removal(confirm="token", default_mode="quarantine", quarantine=quarantine)
    done = await resumed.execute(request(preview), FakeClient())
    assert done.summary.quarantined + done.summary.missing == FILES and done.summary.missing == 150
    record = PlanHeader.from_bytes(await world.store.load_plan("quarantine-" + plan_id) or b"")
    assert sorted(record.parts) == ["b000000", "b000001", "b000002"]
    assert record.totals()[f"{home}/scratch"][0] == FILES
    status = await quarantine.status()
    size = sum((world.sandbox.root / "scratch" / QUARANTINE_DIR / plan_id / n[8:]).stat().st_size for n in names)
    assert status.total_count == FILES and status.total_size == size
    parts = manifest_entries(world.sandbox.root, plan_id)
    listed = [e["path"] for entries in parts for e in entries]
    assert len(listed) == len(set(listed)) == FILES
    back = await quarantine.restore(plan_id)
    assert back.summary.restored == FILES
    for i, name in enumerate(names):
        assert (world.sandbox.root / name).read_bytes() == f"file {i}\n".encode() * (i + 1)


# ------------------------------------------------------------------------------------------------ purge


@pytest.mark.parametrize("sandbox", [{"inline_max_entries": 10_000}], indirect=True)  # deleted while asked
async def test_a_purge_leaves_no_part_file_and_no_row_of_the_plan(rig: Rig) -> None:
    names = make_files(rig.root)
    await send_in_batches(rig, "gone", await rig.seen(*names))
    rig.clock.now += 8 * DAY
    (rig.root / "scratch/keep.txt").write_text("kept\n")
    await rig.quarantine.send("kept", await rig.seen("scratch/keep.txt"), batch=0)
    assert rig.quarantine.store is not None
    assert len(await stored_keys(rig.quarantine.store, "gone")) == 4  # the header and three parts
    dry = await rig.quarantine.purge(dry_run=True)
    assert [p.plan_id for p in dry.expired] == ["gone"] and dry.expired[0].count == FILES
    report = await rig.quarantine.purge(dry_run=False)
    assert report.outcomes == {rig.v(f"scratch/{QUARANTINE_DIR}/gone"): "removed"}
    assert quarantine_files(rig.root) == ["kept.manifest.json", "kept.part-b000000.manifest.json"]
    assert not (rig.root / "scratch" / QUARANTINE_DIR / "gone").exists()
    assert await stored_keys(rig.quarantine.store, "gone") == []
    assert len(await stored_keys(rig.quarantine.store, "kept")) == 2
    status = await rig.quarantine.status()
    assert [p.plan_id for p in status.plans] == ["kept"] and status.total_count == 1


# ------------------------------------------------------------------------------------------------ the previous version


def quarantine_the_old_way(rig: Rig, plan_id: str, names: list[str]) -> tuple[bytes, bytes]:
    """Move `names` into the quarantine on disk, and return the record and manifest exactly as the previous
    version wrote them (one record value with every row, one manifest with every entry)."""
    root = rig.v("scratch")
    rows = []
    for name in names:
        source = rig.root / name
        info = source.stat()
        target = rig.root / "scratch" / QUARANTINE_DIR / plan_id / name.removeprefix("scratch/")
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
        rows.append([rig.v(name), "file", info.st_size, 1])
    when = rig.clock()
    body = {"v": 1, "id": plan_id, "t": when, "r": {root: rows}, "x": when + 7 * DAY}
    record = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    entries = [
        {
            "path": path,
            "type": kind,
            "size": size,
            "files": files,
            "quarantined_as": f"{root}/{QUARANTINE_DIR}/{plan_id}" + path[len(root) :],
        }
        for path, kind, size, files in rows
    ]
    manifest = {
        "plan_id": plan_id,
        "root": root,
        "quarantined_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when + 7 * DAY)),
        "how_to_restore": "move each entry back to `path` (restore_paths does it), or strip "
        f"'{QUARANTINE_DIR}/{plan_id}/' from its place",
        "entries": entries,
    }
    content = json.dumps(manifest, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass")
    (rig.root / "scratch" / QUARANTINE_DIR / (plan_id + MANIFEST_SUFFIX)).write_bytes(content)
    return record, content


async def test_a_plan_quarantined_by_the_previous_version_is_listed_restored_and_purged(rig: Rig) -> None:
    names = make_files(rig.root, count=12)
    sizes = {rig.v(n): (rig.root / n).stat().st_size for n in names}
    record, _ = quarantine_the_old_way(rig, "oldplan", names)
    store = rig.quarantine.store
    assert store is not None
    await store.save_plan("quarantine-oldplan", record, rig.clock() + 37 * DAY)
    status = await rig.quarantine.status()
    assert status.plan_count == 1 and status.plans[0].exact
    assert status.total_count == 12 and status.total_size == sum(sizes.values())
    # Chosen paths: restored, and taken out of the old record (which becomes a part of its own).
    back = await rig.quarantine.restore("oldplan", [rig.v(names[0]), rig.v(names[1])])
    assert back.summary.restored == 2 and (rig.root / names[0]).read_bytes() == b"file 0\n"
    assert (await rig.quarantine.status()).total_count == 10
    assert sorted((await header(rig, "oldplan")).parts) == ["v1"]
    # A resumed execution by this version adds its batch as a part beside the old rows.
    (rig.root / names[0]).rename(rig.root / "scratch/batch/later.out")
    await rig.quarantine.send("oldplan", await rig.seen("scratch/batch/later.out"), batch=3)
    status = await rig.quarantine.status()
    assert status.total_count == 11 and sorted((await header(rig, "oldplan")).parts) == ["b000003", "v1"]
    manifest = json.loads((rig.root / "scratch" / QUARANTINE_DIR / ("oldplan" + MANIFEST_SUFFIX)).read_text())
    assert "entries" not in manifest and manifest["count"] == 11  # the old entries are now its part "v1"
    assert sorted(len(entries) for entries in manifest_entries(rig.root, "oldplan")) == [1, 10]
    rig.clock.now += 8 * DAY
    report = await rig.quarantine.purge(dry_run=False)
    assert [p.plan_id for p in report.expired] == ["oldplan"] and report.expired[0].count == 11
    assert quarantine_files(rig.root) == []  # the old manifest, the new one and its part
    assert not (rig.root / "scratch" / QUARANTINE_DIR / "oldplan").exists()
    assert await stored_keys(store, "oldplan") == []


async def test_a_previous_versions_plan_is_restored_whole_with_its_manifest_removed(rig: Rig) -> None:
    names = make_files(rig.root, count=12)
    with_files = files_below(rig.root)
    record, _ = quarantine_the_old_way(rig, "oldwhole", names)
    assert rig.quarantine.store is not None
    await rig.quarantine.store.save_plan("quarantine-oldwhole", record, rig.clock() + 37 * DAY)
    result = await rig.quarantine.restore("oldwhole")
    assert result.summary.restored == 12 and result.summary.requested == 12
    assert files_below(rig.root) == with_files
    assert quarantine_files(rig.root) == [] and (await rig.quarantine.status()).plan_count == 0
    assert await stored_keys(rig.quarantine.store, "oldwhole") == []


async def test_a_previous_versions_plan_without_its_record_is_purged_with_its_manifest(rig: Rig) -> None:
    names = make_files(rig.root, count=4)
    quarantine_the_old_way(rig, "norecord", names)
    rig.clock.now += 8 * DAY
    folder = rig.root / "scratch" / QUARANTINE_DIR / "norecord"
    os.utime(folder, (rig.clock() - 8 * DAY, rig.clock() - 8 * DAY))
    os.utime(folder.with_name("norecord" + MANIFEST_SUFFIX), (rig.clock() - 8 * DAY, rig.clock() - 8 * DAY))
    status = await rig.quarantine.status()
    assert status.total_count == 4 and status.plans[0].expired  # measured by walking, dated by the manifest
    await rig.quarantine.purge(dry_run=False)
    assert quarantine_files(rig.root) == [] and not folder.exists()


async def test_the_previous_version_reading_a_new_header_finds_no_rows_rather_than_failing(rig: Rig) -> None:
    """A replica still running the previous version (a rolling upgrade) reads the header as a record without
    rows: it measures the plan by walking and restores from the layout, never fails on it."""
    names = make_files(rig.root, count=3)
    await rig.quarantine.send("mixed", await rig.seen(*names), batch=0)
    assert rig.quarantine.store is not None
    data = await rig.quarantine.store.load_plan("quarantine-mixed")
    raw = json.loads(data or b"")
    # What the previous version's PlanRecord.from_bytes reads.
    assert float(raw["t"]) == rig.clock() and {str(k): [list(r) for r in v] for k, v in raw["r"].items()} == {}


async def test_drop_plans_forgets_the_values_and_a_removal_plans_place_in_the_pending_list(rig: Rig) -> None:
    store = rig.quarantine.store
    assert store is not None
    expires = rig.clock() + 300
    await store.save_plan("abc123", b"a removal plan", expires)
    await store.save_plan("quarantine-abc123", b"a header", expires)
    await store.save_plan("quarantine-other", b"another header", expires)
    assert await store.pending(rig.clock()) == ["abc123"]
    await store.drop_plans(["abc123", "quarantine-abc123", "never-saved"])
    assert await store.load_plan("abc123") is None and await store.load_plan("quarantine-abc123") is None
    assert await store.load_plan("quarantine-other") == b"another header"
    assert await store.pending(rig.clock()) == []
    await store.drop_plans([])  # nothing to drop: no call fails
