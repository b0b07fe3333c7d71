"""Red-team attacks on the guard: each test asserts the SAFE behaviour, so a failing test is a break.

Attacks come from an adversarial agent (choosing arguments) and a hostile co-user of the file system
(changing the tree between the dry run and the execution). Everything goes through the MCP tools
against the sandbox, over real HTTP, and checks what was really deleted on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import mcp.types as types
import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server

from ..conftest import audit_lines, call_error, call_ok


def real(sandbox: RunningSandbox, virtual: str) -> Path:
    return sandbox.root / virtual.removeprefix(sandbox.home + "/")


def text_of(result: types.CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def plan_and_maybe_execute(client: Client, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Dry run; if the guard handed out a token, execute it by the token alone (what an agent would do)."""
    plan = await call_ok(client, "remove_paths", args)
    done = None
    if plan.get("confirmation_token"):
        done = await call_ok(
            client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
        await settle(client, done)
    return plan, done


async def settle(client: Client, done: dict[str, Any] | None) -> None:
    """Wait for the server tasks of an execution (large folders are removed in the background)."""
    if done and done.get("task_ids"):
        await call_ok(client, "get_task", {"task_ids": done["task_ids"], "wait_seconds": 30})


def items_by_path(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["path"]: item for item in answer.get("items", [])}


def keep_mtime(path: Path) -> tuple[float, float]:
    info = os.stat(path, follow_symlinks=False)
    return info.st_atime, info.st_mtime


# =====================================================================================================
# 1. A folder's contents that the dry run could not see: over the walk budget, cut listings, unreadable
#    sub-folders. The promise: "a folder holding a protected name at any depth, or a link, is refused".
# =====================================================================================================


async def test_budget_exhausted_folder_hiding_a_protected_name_is_not_removed(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    """A co-user (or an unlucky layout) puts 150 files beside a sub-folder holding `.ssh`: the walk budget
    runs out on the first listing, the `.ssh` inside is never seen, and the folder is planned and deleted."""
    folder = real(sandbox, f"{sandbox.home}/scratch/bulk")
    folder.mkdir()
    for i in range(150):
        (folder / f"f{i:04d}.dat").write_bytes(b"x")
    (folder / "zz" / ".ssh").mkdir(parents=True)
    (folder / "zz" / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    async with Client(build_server(make_settings(walk_max_entries=100)), mode=era) as client:
        plan, _done = await plan_and_maybe_execute(client, {"paths": [f"{sandbox.home}/scratch/bulk"]})
    assert (folder / "zz" / ".ssh" / "id_ed25519").exists(), "a protected .ssh inside the folder was deleted"
    assert plan["items"][0]["status"] == "refused", plan["items"][0]


async def test_budget_exhausted_folder_hiding_a_link_is_not_removed(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    folder = real(sandbox, f"{sandbox.home}/scratch/bulk")
    folder.mkdir()
    for i in range(150):
        (folder / f"f{i:04d}.dat").write_bytes(b"x")
    (folder / "zz").mkdir()
    (folder / "zz" / "to-projects").symlink_to(sandbox.root / "projects")
    async with Client(build_server(make_settings(walk_max_entries=100)), mode=era) as client:
        plan, _done = await plan_and_maybe_execute(client, {"paths": [f"{sandbox.home}/scratch/bulk"]})
    assert plan["items"][0]["status"] == "refused", plan["items"][0]
    assert (folder / "zz" / "to-projects").is_symlink()


async def test_budget_exhausted_selection_hiding_a_protected_name_is_not_removed(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    """The same through select: the matched folder's tree was not read whole, yet it is planned."""
    folder = real(sandbox, f"{sandbox.home}/scratch/bulk")
    folder.mkdir()
    for i in range(150):
        (folder / f"f{i:04d}.dat").write_bytes(b"x")
    (folder / "zz" / ".gnupg").mkdir(parents=True)
    (folder / "zz" / ".gnupg" / "secring.gpg").write_text("secret\n")
    select = {"path": f"{sandbox.home}/scratch", "name": "bulk", "type": "directory", "max_depth": 1}
    async with Client(build_server(make_settings(walk_max_entries=100)), mode=era) as client:
        _plan, _done = await plan_and_maybe_execute(client, {"select": select})
    assert (folder / "zz" / ".gnupg" / "secring.gpg").exists(), "a protected .gnupg inside the folder was deleted"


@pytest.mark.parametrize("sandbox", [{"list_ignores_start": True, "list_page_cap": 100}], indirect=True)
async def test_a_cut_listing_hiding_a_protected_file_is_not_removed(client: Client, sandbox: RunningSandbox) -> None:
    """A server that ignores `start` shows only the first 100 entries. `．ｂａｓｈｒｃ` (full width: NFKC is
    `.bashrc`, a protected name) sorts after them: never seen, and the folder goes."""
    folder = real(sandbox, f"{sandbox.home}/scratch/wide")
    folder.mkdir()
    for i in range(150):
        (folder / f"f{i:04d}.dat").write_bytes(b"x")
    (folder / "\uff0e\uff42\uff41\uff53\uff48\uff52\uff43").write_text("export SECRET=1\n")
    plan, _done = await plan_and_maybe_execute(client, {"paths": [f"{sandbox.home}/scratch/wide"]})
    assert (folder / "\uff0e\uff42\uff41\uff53\uff48\uff52\uff43").exists(), "a protected name was deleted"
    assert plan["items"][0]["status"] == "refused", plan["items"][0]


@pytest.mark.parametrize("sandbox", [{"list_ignores_start": True, "list_page_cap": 100}], indirect=True)
async def test_a_cut_listing_hiding_a_link_is_not_removed(client: Client, sandbox: RunningSandbox) -> None:
    folder = real(sandbox, f"{sandbox.home}/scratch/wide")
    folder.mkdir()
    for i in range(150):
        (folder / f"f{i:04d}.dat").write_bytes(b"x")
    (folder / "zz-link").symlink_to(sandbox.root / "projects")
    plan, _done = await plan_and_maybe_execute(client, {"paths": [f"{sandbox.home}/scratch/wide"]})
    assert plan["items"][0]["status"] == "refused", plan["items"][0]
    assert (folder / "zz-link").is_symlink()


async def test_an_unreadable_sub_folder_does_not_vouch_for_its_contents(
    client: Client, sandbox: RunningSandbox
) -> None:
    """The listing of one sub-folder fails (here: an unknown code from file/list, as a flaky gateway or a
    permission error gives). What is in it is unknown, so the folder cannot be said to hold no `.ssh`."""
    from efile_mcp.sandbox.faults import FaultPlan, FaultRule

    folder = real(sandbox, f"{sandbox.home}/scratch/box")
    (folder / "inner" / ".ssh").mkdir(parents=True)
    (folder / "inner" / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    target = f"{sandbox.home}/scratch/box"
    # Calls to file/list in the dry run: the parent look-up of `box`, `box` itself, then `box/inner`.
    sandbox.sandbox.faults = FaultPlan([FaultRule("unknown_code", endpoint="file/list", skip=2, burst=1)])
    plan = await call_ok(client, "remove_paths", {"paths": [target]})
    sandbox.sandbox.faults = FaultPlan([])
    if plan.get("confirmation_token"):
        await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert (folder / "inner" / ".ssh" / "id_rsa").exists(), "an unread sub-folder's .ssh was deleted"
    assert plan["items"][0]["status"] == "refused", plan["items"][0]


# =====================================================================================================
# 2. What changes inside a confirmed folder after the dry run (execution re-lists the path, not the tree)
# =====================================================================================================


async def test_data_moved_deep_into_a_confirmed_folder_is_not_deleted_unseen(
    client: Client, sandbox: RunningSandbox
) -> None:
    """Dry run: run-001, 5 files, ~1 KB. A co-user then moves 400 files of results into
    run-001/checkpoints (the top folder's own mtime does not change). The person confirmed 5 files."""
    run = f"{sandbox.home}/scratch/run-001"
    plan = await call_ok(client, "remove_paths", {"paths": [run]})
    assert plan["items"][0]["file_count"] == 5
    top = real(sandbox, run)
    stamp = keep_mtime(top)
    results = sandbox.root / "projects" / "results"
    results.mkdir()
    for i in range(400):
        (results / f"r{i:04d}.csv").write_text("weeks of work\n" * 100)
    os.rename(results, top / "checkpoints" / "results")
    os.utime(top, stamp)  # not even needed on most file systems; makes the race deterministic
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    await settle(client, done)
    assert (top / "checkpoints" / "results").exists(), (
        f"400 files never previewed were deleted with the confirmed folder: {done['items'][0]}"
    )


async def test_a_protected_name_moved_deep_into_a_confirmed_folder_is_not_deleted(
    client: Client, sandbox: RunningSandbox
) -> None:
    run = f"{sandbox.home}/scratch/run-001"
    plan = await call_ok(client, "remove_paths", {"paths": [run]})
    top = real(sandbox, run)
    stamp = keep_mtime(top)
    (top / "checkpoints" / ".ssh").mkdir()
    (top / "checkpoints" / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    os.utime(top, stamp)
    await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert (top / "checkpoints" / ".ssh" / "id_rsa").exists(), "a protected .ssh was deleted at execution"


async def test_a_link_planted_deep_in_a_confirmed_folder_is_not_removed(
    client: Client, sandbox: RunningSandbox
) -> None:
    run = f"{sandbox.home}/scratch/run-001"
    plan = await call_ok(client, "remove_paths", {"paths": [run]})
    top = real(sandbox, run)
    stamp = keep_mtime(top)
    (top / "checkpoints" / "precious").symlink_to(sandbox.root / "projects")
    os.utime(top, stamp)
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert done["items"][0]["status"] == "changed", done["items"][0]


async def test_a_confirmed_folder_renamed_away_and_replaced_is_not_deleted(
    client: Client, sandbox: RunningSandbox
) -> None:
    """Dry run: run-002 (2 files, a few hundred bytes). A co-user renames it away and renames big-run
    (300 files) into its place, copying the old folder's mtime (`touch -r`). Type, size (a folder's own
    listing size is ignored) and mtime all match, so big-run is deleted as "run-002"."""
    run2 = f"{sandbox.home}/scratch/run-002"
    plan = await call_ok(client, "remove_paths", {"paths": [run2]})
    assert plan["items"][0]["file_count"] == 2
    old = real(sandbox, run2)
    stamp = keep_mtime(old)
    os.rename(old, old.with_name("run-002.kept"))
    os.rename(real(sandbox, f"{sandbox.home}/scratch/big-run"), old)
    os.utime(old, stamp)
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    await settle(client, done)
    assert old.exists(), f"a 300-file folder the person never saw was deleted as run-002: {done['items'][0]}"
    assert done["items"][0]["status"] == "changed"


@pytest.mark.parametrize("sandbox", [{"list_ignores_start": True, "list_page_cap": 100}], indirect=True)
async def test_a_cut_listing_leaves_no_mtime_to_compare_so_a_swap_passes(
    client: Client, sandbox: RunningSandbox
) -> None:
    """Where listings are cut, folders beyond the first page are known only from `children` (no mtime): a
    folder swapped after the dry run is not detected even without copying the mtime."""
    scratch = real(sandbox, f"{sandbox.home}/scratch")
    for i in range(120):
        (scratch / f"a{i:04d}.tmp").write_bytes(b"x")
    (scratch / "zz-one").mkdir()
    (scratch / "zz-one" / "small.txt").write_text("1\n")
    (scratch / "zz-two").mkdir()
    (scratch / "zz-two" / "small.txt").write_text("2\n")
    targets = [f"{sandbox.home}/scratch/zz-one", f"{sandbox.home}/scratch/zz-two"]
    plan = await call_ok(client, "remove_paths", {"paths": targets})
    by_path = items_by_path(plan)
    # A folder known only from `children` has no mtime to check again at execution: it is not confirmed.
    assert by_path[targets[0]]["status"] == "refused", by_path
    assert "cannot be identified" in by_path[targets[0]]["reason"]
    assert "confirmation_token" not in plan


async def test_a_file_swapped_for_a_link_is_not_sent(client: Client, sandbox: RunningSandbox) -> None:
    target = f"{sandbox.home}/scratch/tmp.log"
    plan = await call_ok(client, "remove_paths", {"paths": [target]})
    real(sandbox, target).unlink()
    real(sandbox, target).symlink_to(sandbox.root / "projects")
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert done["items"][0]["status"] == "changed"
    assert real(sandbox, target).is_symlink() and (sandbox.root / "projects").exists()


# =====================================================================================================
# 3. Nested allowed roots: the components between an outer and an inner root are never checked
# =====================================================================================================


async def test_a_link_between_nested_roots_cannot_lead_outside_them(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    """Roots ~/scratch and ~/scratch/run-001/checkpoints. A co-user replaces scratch/run-001 (inside the
    outer root) by a link to ~/projects/p. The inner root now resolves into projects (not allowed):
    the chain is checked from the innermost root only, so the link is never seen."""
    home = sandbox.home
    victim = sandbox.root / "projects" / "p" / "checkpoints"
    victim.mkdir(parents=True)
    (victim / "ckpt-0001.pt").write_text("the real model\n")
    settings = make_settings(allowed_roots=(f"{home}/scratch", f"{home}/scratch/run-001/checkpoints"))
    shutil.rmtree(sandbox.root / "scratch" / "run-001")
    (sandbox.root / "scratch" / "run-001").symlink_to(sandbox.root / "projects" / "p")
    async with Client(build_server(settings), mode=era) as client:
        plan, _done = await plan_and_maybe_execute(
            client, {"paths": [f"{home}/scratch/run-001/checkpoints/ckpt-0001.pt"]}
        )
    assert (victim / "ckpt-0001.pt").exists(), "a file outside every allowed root was deleted through a link"
    assert plan["items"][0]["status"] == "refused"


# =====================================================================================================
# 4. select tricks
# =====================================================================================================


async def test_select_path_through_a_link_is_refused(client: Client, sandbox: RunningSandbox) -> None:
    (sandbox.root / "scratch" / "via").symlink_to(sandbox.root / "projects")
    error = await call_error(client, "remove_paths", {"select": {"path": f"{sandbox.home}/scratch/via"}})
    assert "symbolic link" in error
    (sandbox.root / "scratch" / "deep").mkdir()
    (sandbox.root / "scratch" / "deep" / "via").symlink_to(sandbox.root / "projects")
    error = await call_error(
        client, "remove_paths", {"select": {"path": f"{sandbox.home}/scratch/deep/via/paper (draft)"}}
    )
    assert "symbolic link" in error
    assert sandbox.sandbox.request_counts["async-remove"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/public/home/demo",
        "/public/home/demo/.ssh",
        "/public/home/demo/scratch/",
        "/public/home/demo/scratch/../projects",
        "/public/home/demo/scratchy",
        "/public/home/demo//scratch",
    ],
)
async def test_select_path_outside_or_spelled_oddly_is_refused(
    client: Client, sandbox: RunningSandbox, path: str
) -> None:
    result = await client.call_tool("remove_paths", {"select": {"path": path}})
    assert result.is_error, result.structured_content
    assert "Traceback" not in text_of(result)
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_select_never_matches_protected_names_links_or_roots(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    home = sandbox.home
    (sandbox.root / "scratch" / "cache" / ".SSH").mkdir(parents=True)
    (sandbox.root / "scratch" / "cache" / ".SSH" / "k").write_text("k")
    (sandbox.root / "scratch" / "lnk").symlink_to(sandbox.root / "notes.txt")
    settings = make_settings(allowed_roots=(f"{home}/scratch", f"{home}/scratch/run-001"))
    async with Client(build_server(settings), mode=era) as client:
        _plan, _done = await plan_and_maybe_execute(
            client, {"select": {"path": f"{home}/scratch", "type": "any"}, "detail": "full"}
        )
    assert (sandbox.root / "scratch" / "cache" / ".SSH" / "k").exists()
    assert (sandbox.root / "scratch" / "lnk").is_symlink()
    assert (sandbox.root / "scratch" / "run-001").exists()  # an allowed root itself
    assert (sandbox.root / "notes.txt").exists()


async def test_select_over_max_paths_is_refused_whole(make_settings: Any, sandbox: RunningSandbox, era: str) -> None:
    async with Client(build_server(make_settings(max_paths=10, max_plan_paths=10)), mode=era) as client:
        error = await call_error(
            client, "remove_paths", {"select": {"path": f"{sandbox.home}/scratch", "type": "file"}}
        )
    assert "limit" in error
    assert sandbox.sandbox.request_counts["async-remove"] == 0


# =====================================================================================================
# 5. Execution arguments that differ from the plan
# =====================================================================================================


async def test_a_token_cannot_carry_another_plans_paths_or_select(client: Client, sandbox: RunningSandbox) -> None:
    home = sandbox.home
    a = await call_ok(client, "remove_paths", {"paths": [f"{home}/scratch/tmp.log"]})
    await call_ok(client, "remove_paths", {"paths": [f"{home}/scratch/run-001"]})
    for args in (
        {"paths": [f"{home}/scratch/run-001"]},
        {"paths": [f"{home}/scratch/tmp.log", f"{home}/scratch/run-001"]},
        {"paths": [f"{home}/scratch"]},
        {"select": {"path": f"{home}/scratch"}},
        {"select": {"path": f"{home}/scratch", "name": "tmp.log"}},
        {"paths": [f"{home}/scratch/tmp.log/"]},
        {"paths": [f"{home}/scratch//tmp.log"]},
        {"paths": [f"{home}/scratch/./tmp.log"]},
    ):
        result = await client.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": a["confirmation_token"], **args}
        )
        assert result.is_error, args
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    # The token was not spent by the refusals: the genuine execution still works, and only for tmp.log.
    done = await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": a["confirmation_token"]})
    assert done["summary"]["removed"] == 1 and real(sandbox, f"{home}/scratch/run-001").exists()


async def test_a_tampered_token_is_refused(client: Client, sandbox: RunningSandbox) -> None:
    import base64

    plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/tmp.log"]})
    token = plan["confirmation_token"]
    prefix, body, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["e"] += 100000
    forged = (
        base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        .rstrip(b"=")
        .decode()
    )
    for bad in (f"{prefix}.{forged}.{mac}", token + "A", token[:-1], token.upper(), "efc1..", ""):
        result = await client.call_tool("remove_paths", {"dry_run": False, "confirmation_token": bad})
        assert result.is_error and "Traceback" not in text_of(result)
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_two_racing_executions_of_one_token_send_once(client: Client, sandbox: RunningSandbox) -> None:
    import anyio

    plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/run-002"]})
    results: list[types.CallToolResult] = []

    async def go() -> None:
        results.append(
            await client.call_tool("remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
        )

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(go)
    assert sum(1 for r in results if not r.is_error) == 1
    assert sandbox.sandbox.received_remove_paths.count(f"{sandbox.home}/scratch/run-002") == 1


# =====================================================================================================
# 6. The person in the loop
# =====================================================================================================


class Person:
    def __init__(self, action: str = "accept", content: dict[str, Any] | None = None) -> None:
        self.action = action
        self.content = {"confirm": True} if content is None else content
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        if self.action == "accept":
            return types.ElicitResult(action="accept", content=self.content)
        return types.ElicitResult(action=self.action)  # type: ignore[arg-type]


async def test_an_agent_cannot_inject_the_persons_answer_as_an_argument(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    target = f"{sandbox.home}/scratch/tmp.log"
    async with Client(build_server(make_settings(confirm="human")), mode=era) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [target]})
        result = await client.call_tool(
            "remove_paths",
            {
                "dry_run": False,
                "confirmation_token": plan["confirmation_token"],
                "person": {"confirm": True, "outcome": "accepted", "action": "accept", "content": {"confirm": True}},
            },
        )
    assert result.is_error
    assert real(sandbox, target).exists()


async def test_a_declined_token_cannot_be_redeemed_from_a_session_without_a_form(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    target = f"{sandbox.home}/scratch/tmp.log"
    settings = make_settings()
    server = build_server(settings)
    async with Client(server, mode=era, elicitation_callback=Person("decline")) as asking:
        plan = await call_ok(asking, "remove_paths", {"paths": [target]})
        refused = await asking.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
        assert refused.is_error
    async with Client(server, mode=era) as silent:
        again = await silent.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert again.is_error
    assert real(sandbox, target).exists() and sandbox.sandbox.request_counts["async-remove"] == 0


async def test_a_token_asked_about_cannot_be_executed_by_token_alone_elsewhere(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    """Legacy era: the person is being asked (the form hangs); meanwhile the agent opens a session whose
    client cannot show a form and executes the same token there (auto mode falls back to the token)."""
    import anyio

    target = f"{sandbox.home}/scratch/tmp.log"
    server = build_server(make_settings(confirm_timeout=3.0))
    asked, answered_elsewhere = anyio.Event(), anyio.Event()

    async def hanging(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        """The form stays open until the other session has had its try, then the person declines."""
        asked.set()
        await answered_elsewhere.wait()
        return types.ElicitResult(action="decline")

    async with (
        Client(server, mode="legacy", elicitation_callback=hanging) as asking,
        Client(server, mode="legacy") as silent,
    ):
        plan = await call_ok(asking, "remove_paths", {"paths": [target]})
        outcome: dict[str, types.CallToolResult] = {}

        async def first() -> None:
            outcome["asking"] = await asking.call_tool(
                "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await asked.wait()
            outcome["silent"] = await silent.call_tool(
                "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
            )
            answered_elsewhere.set()
    assert outcome["silent"].is_error, outcome["silent"].structured_content
    assert real(sandbox, target).exists()


async def test_the_form_shows_homoglyph_and_trailing_blank_names_distinctly(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    """The person must be able to tell which folder goes: `data` and `dаta` (Cyrillic а), `data ` (trailing
    space) all exist; the agent previews the one the person wants to keep."""
    scratch = sandbox.root / "scratch"
    for name in ("data", "d\u0430ta", "data "):
        (scratch / name).mkdir()
        (scratch / name / "x").write_text(name)
    person = Person("decline")
    async with Client(build_server(make_settings()), mode=era, elicitation_callback=person) as client:
        for name in ("d\u0430ta", "data "):
            plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/{name}"]})
            await client.call_tool("remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    shown = [line for message in person.asked for line in message.splitlines() if "/scratch/" in line]
    assert len(shown) == 2
    # Neither may render exactly like the plain `.../scratch/data` the person knows and wants to keep:
    # the Cyrillic а shown raw, the trailing blank shown as a blank, are both indistinguishable on screen.
    cyrillic, blank = shown
    problems = []
    if "d\u0430ta" in cyrillic:
        problems.append(cyrillic)
    if f"{sandbox.home}/scratch/data   (" in blank:
        problems.append(blank)
    assert not problems, problems


# =====================================================================================================
# 7. Unicode and protected names
# =====================================================================================================


@pytest.mark.parametrize(
    "name",
    [
        ".SSH",
        "\uff0essh",
        ".\u017fsh",
        ".ssh\u00a0",
        ".ssh\u3000",
        ".ssh...",
        ".s\u0073h",
        ".BASHRC",
        ".Bash_Profile",
        "\u2024ssh",
    ],
)
async def test_protected_name_spellings(client: Client, sandbox: RunningSandbox, name: str) -> None:
    folder = sandbox.root / "scratch" / "cfg"
    (folder / name).mkdir(parents=True)
    (folder / name / "k").write_text("k")
    direct = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/cfg/{name}"]})
    parent = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/cfg"]})
    assert direct["items"][0]["status"] == "refused", (name, direct["items"][0])
    assert parent["items"][0]["status"] == "refused", (name, parent["items"][0])


@pytest.mark.parametrize("name", ["a\u202eb", "a\u200bb", "a\u2028b", "a\nb", "a\x7fb"])
async def test_invisible_characters_in_names_are_refused_without_a_crash(
    client: Client, sandbox: RunningSandbox, name: str
) -> None:
    (sandbox.root / "scratch" / name).write_text("x")
    result = await client.call_tool("remove_paths", {"paths": [f"{sandbox.home}/scratch/{name}"]})
    assert not result.is_error, text_of(result)
    assert result.structured_content["items"][0]["status"] == "refused"


async def test_a_lone_surrogate_path_does_not_crash(client: Client, sandbox: RunningSandbox, audit_path: Path) -> None:
    result = await client.call_tool(
        "remove_paths", {"paths": [f"{sandbox.home}/scratch/\ud800x", f"{sandbox.home}/scratch/tmp.log"]}
    )
    assert "Traceback" not in text_of(result) and "crashed" not in text_of(result).lower(), text_of(result)
    assert not result.is_error, text_of(result)


async def test_a_folder_with_an_undecodable_name_inside_is_not_a_crash_or_a_pass(
    client: Client, sandbox: RunningSandbox
) -> None:
    """A co-user plants a file whose name is not UTF-8 next to `.ssh` in a sub-folder."""
    box = sandbox.root / "scratch" / "box"
    (box / "inner" / ".ssh").mkdir(parents=True)
    (box / "inner" / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    os.close(os.open(os.fsencode(box / "inner") + b"/\xff\xfe", os.O_CREAT | os.O_WRONLY, 0o644))
    result = await client.call_tool("remove_paths", {"paths": [f"{sandbox.home}/scratch/box"]})
    assert "Traceback" not in text_of(result), text_of(result)
    if not result.is_error and result.structured_content.get("confirmation_token"):
        await client.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": result.structured_content["confirmation_token"]}
        )
    assert (box / "inner" / ".ssh" / "id_rsa").exists()


# =====================================================================================================
# 8. Huge inputs and bounds
# =====================================================================================================


async def test_a_path_over_4096_bytes_is_refused_cleanly(client: Client, sandbox: RunningSandbox) -> None:
    long = f"{sandbox.home}/scratch/" + "/".join(["d" * 200] * 25)
    result = await client.call_tool("remove_paths", {"paths": [long]})
    assert not result.is_error, text_of(result)
    assert result.structured_content["items"][0]["status"] == "refused"
    assert len(json.dumps(result.structured_content)) < len(long) + 3000


async def test_a_hundred_thousand_paths_are_refused_whole(
    client: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    paths = [f"{sandbox.home}/scratch/f{i}" for i in range(100_000)]
    listings_before = sandbox.sandbox.request_counts["file/list"]  # (the roots are looked up at start)
    result = await client.call_tool("remove_paths", {"paths": paths})
    assert result.is_error and "Traceback" not in text_of(result)
    assert sandbox.sandbox.request_counts["file/list"] == listings_before
    refusals = [line for line in audit_lines(audit_path) if line["event"] == "refusal"]
    assert len(json.dumps(refusals[-1])) < 100_000


async def test_a_deep_tree_is_walked_without_a_crash(client: Client, sandbox: RunningSandbox) -> None:
    base = sandbox.root / "scratch" / "deep"
    current = base
    for _ in range(150):
        current = current / "d"
    current.mkdir(parents=True)
    (current / "leaf.txt").write_text("leaf")
    plan = await call_ok(client, "remove_paths", {"paths": [f"{sandbox.home}/scratch/deep"]})
    assert plan["items"][0]["status"] == "would_remove" and plan["items"][0]["file_count"] == 1


async def test_execution_by_paths_with_many_duplicates_and_covered_paths(
    client: Client, sandbox: RunningSandbox
) -> None:
    run = f"{sandbox.home}/scratch/run-001"
    plan = await call_ok(client, "remove_paths", {"paths": [run]})
    inner = [f"{run}/checkpoints", f"{run}/stdout.log", f"{run}/checkpoints/ckpt-0001.pt"]
    done = await call_ok(
        client,
        "remove_paths",
        {"dry_run": False, "confirmation_token": plan["confirmation_token"], "paths": [run, *inner, run]},
    )
    assert sandbox.sandbox.received_remove_paths == [run]
    assert done["summary"]["removed"] == 1


# =====================================================================================================
# 9. Audit and compact answers
# =====================================================================================================


async def test_the_intent_line_precedes_the_send_and_names_exactly_what_is_sent(
    client: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    home = sandbox.home
    targets = [f"{home}/scratch/run-001", f"{home}/scratch/tmp.log"]
    plan = await call_ok(client, "remove_paths", {"paths": targets})
    real(sandbox, f"{home}/scratch/tmp.log").write_text("changed\n")
    await call_ok(client, "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    events = audit_lines(audit_path)
    intent = next(line for line in events if line["event"] == "intent")
    assert intent["paths"] == [targets[0]] and intent["changed"] == [targets[1]]
    assert sandbox.sandbox.received_remove_paths == [targets[0]]


async def test_a_summary_answer_does_not_hide_refusals(client: Client, sandbox: RunningSandbox) -> None:
    home = sandbox.home
    many = sandbox.root / "scratch" / "many"
    many.mkdir()
    for i in range(70):
        (many / f"f{i:03d}").write_text("x")
    paths = [f"{home}/scratch/many/f{i:03d}" for i in range(70)] + [f"{home}/.ssh", f"{home}/.bashrc"]
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    assert plan["summary"]["refused"] == 2
    assert {e["path"] for e in plan["exceptions"]} == {f"{home}/.ssh", f"{home}/.bashrc"}
    assert f"{home}/.ssh" not in json.dumps(plan.get("confirm_paths") or [])


async def test_an_unreadable_answer_after_sending_is_not_a_bare_error(client: Client, sandbox: RunningSandbox) -> None:
    """The remove is sent, its answer is garbage: the execution must still answer per path, not raise."""
    from efile_mcp.sandbox.faults import FaultPlan, FaultRule

    target = f"{sandbox.home}/scratch/run-002"
    plan = await call_ok(client, "remove_paths", {"paths": [target]})
    sandbox.sandbox.faults = FaultPlan([FaultRule("malformed_after", endpoint="async-remove", rate=1.0)])
    result = await client.call_tool(
        "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    assert not result.is_error, text_of(result)
    assert result.structured_content["items"][0]["status"] in ("removed", "failed", "missing")


async def test_the_form_names_every_path_it_deletes(make_settings: Any, sandbox: RunningSandbox, era: str) -> None:
    """Eight large junk folders, and the small folder the person wants to keep: the form lists the eight by
    name and the ninth as "… and 1 more: 1 folder, 20 B". The person confirms without seeing its name."""
    scratch = sandbox.root / "scratch"
    for i in range(8):
        (scratch / f"junk-{i}").mkdir()
        (scratch / f"junk-{i}" / "blob").write_bytes(b"x" * (10_000 + i))
    (scratch / "thesis").mkdir()
    (scratch / "thesis" / "chapter1.tex").write_text("years of work\n")
    paths = [f"{sandbox.home}/scratch/junk-{i}" for i in range(8)] + [f"{sandbox.home}/scratch/thesis"]
    person = Person("decline")
    async with Client(build_server(make_settings()), mode=era, elicitation_callback=person) as client:
        plan = await call_ok(client, "remove_paths", {"paths": paths})
        await client.call_tool("remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    (question,) = person.asked
    assert "thesis" in question, question


# =====================================================================================================
# 10. The policy "checked again at execution": a configuration change between dry run and execution
# =====================================================================================================


async def test_a_name_protected_after_the_dry_run_is_not_removed_by_the_old_token(
    make_settings: Any, sandbox: RunningSandbox, tmp_path: Path, era: str
) -> None:
    """A replica (or a restart) with EFILE_PROTECTED=precious and the shared secret and store: the token of
    a dry run made before the name was protected still deletes it (the plan's paths are not re-screened)."""
    secret = "shared-secret-for-replicas-0123456789"
    target = f"{sandbox.home}/scratch/precious"
    (sandbox.root / "scratch" / "precious").mkdir()
    (sandbox.root / "scratch" / "precious" / "data").write_text("keep\n")
    before = make_settings(confirm_secret=secret, state_dir=tmp_path / "shared")
    after = make_settings(confirm_secret=secret, state_dir=tmp_path / "shared", protected=("precious",))
    async with Client(build_server(before), mode=era) as first:
        plan = await call_ok(first, "remove_paths", {"paths": [target]})
    async with Client(build_server(after), mode=era) as second:
        result = await second.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert (sandbox.root / "scratch" / "precious" / "data").exists(), text_of(result)


async def test_a_folder_that_became_an_ancestor_of_a_root_is_not_removed_by_the_old_token(
    make_settings: Any, sandbox: RunningSandbox, tmp_path: Path, era: str
) -> None:
    secret = "shared-secret-for-replicas-0123456789"
    home = sandbox.home
    target = f"{home}/scratch/run-001"
    before = make_settings(confirm_secret=secret, state_dir=tmp_path / "shared")
    after = make_settings(
        confirm_secret=secret,
        state_dir=tmp_path / "shared",
        allowed_roots=(f"{home}/scratch", f"{home}/scratch/run-001/checkpoints"),
    )
    async with Client(build_server(before), mode=era) as first:
        plan = await call_ok(first, "remove_paths", {"paths": [target]})
    async with Client(build_server(after), mode=era) as second:
        result = await second.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert (sandbox.root / "scratch" / "run-001" / "checkpoints").exists(), (
        f"an allowed root was deleted with its parent: {text_of(result)[:300]}"
    )


async def test_a_root_removed_after_the_dry_run_is_not_acted_on(
    make_settings: Any, sandbox: RunningSandbox, tmp_path: Path, era: str
) -> None:
    secret = "shared-secret-for-replicas-0123456789"
    home = sandbox.home
    target = f"{home}/projects/paper (draft)"
    before = make_settings(confirm_secret=secret, state_dir=tmp_path / "shared")
    after = make_settings(confirm_secret=secret, state_dir=tmp_path / "shared", allowed_roots=(f"{home}/scratch",))
    async with Client(build_server(before), mode=era) as first:
        plan = await call_ok(first, "remove_paths", {"paths": [target]})
    async with Client(build_server(after), mode=era) as second:
        await second.call_tool("remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]})
    assert (sandbox.root / "projects" / "paper (draft)" / "main.tex").exists()
