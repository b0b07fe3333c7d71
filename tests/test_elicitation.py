"""The person confirms (or not) through the client's form, in both protocol eras; nothing runs without a yes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server

from .conftest import audit_lines, call_ok


class Person:
    """An elicitation callback that answers as told and remembers what it was shown."""

    def __init__(self, action: str = "accept", content: dict[str, Any] | None = None, delay: float = 0.0) -> None:
        self.action = action
        self.content = {"confirm": True} if content is None else content
        self.delay = delay
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        if self.delay:
            await anyio.sleep(self.delay)
        if self.action == "accept":
            return types.ElicitResult(action="accept", content=self.content)
        return types.ElicitResult(action=self.action)  # type: ignore[arg-type]


async def plan_then_execute(client: Client, paths: list[str]) -> tuple[dict[str, Any], types.CallToolResult]:
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    result = await client.call_tool(
        "remove_paths", {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    return plan, result


def text_of(result: types.CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@pytest.fixture
def targets(sandbox: RunningSandbox) -> list[str]:
    return [f"{sandbox.home}/scratch/run-001", f"{sandbox.home}/scratch/tmp.log"]


async def test_accept_proceeds_and_the_person_saw_what_was_previewed(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path, era: str
) -> None:
    person = Person()
    async with Client(build_server(make_settings()), mode=era, elicitation_callback=person) as client:
        plan, result = await plan_then_execute(client, targets)
    assert not result.is_error, text_of(result)
    assert result.structured_content and result.structured_content["summary"]["removed"] == 2
    (question,) = person.asked  # asked once, at execution only (not for the dry run)
    # The person sees what the removal really deletes: types, true totals in human units, folders first.
    assert "permanently delete 1 folder and 1 file" in question and all(path in question for path in targets)
    assert f"{plan['summary']['file_count']} files" in question and "newest changed" in question
    assert question.index("(folder,") < question.index("(file,")
    execution = [line for line in audit_lines(audit_path) if line["event"] == "execution"]
    assert execution[0]["confirmed_by"] == "person"


@pytest.mark.parametrize(
    ("person", "code", "spent"),
    [
        (Person("decline"), "person_declined", True),
        (Person("cancel"), "person_cancelled", True),
        (Person("accept", {"confirm": False}), "person_declined", True),
    ],
    ids=["decline", "cancel", "unticked"],
)
async def test_no_from_the_person_refuses_and_spends_the_token(
    make_settings: Any,
    sandbox: RunningSandbox,
    targets: list[str],
    audit_path: Path,
    era: str,
    person: Person,
    code: str,
    spent: bool,
) -> None:
    async with Client(build_server(make_settings()), mode=era, elicitation_callback=person) as client:
        plan, result = await plan_then_execute(client, targets)
        assert result.is_error and "nothing was deleted" in text_of(result)
        again = await client.call_tool(
            "remove_paths", {"paths": targets, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert again.is_error and "already used" in text_of(again)  # the agent cannot simply ask again
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert audit_lines(audit_path)[-2]["reason"] == code


async def test_an_invalid_answer_refuses(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], era: str
) -> None:
    person = Person("accept", {"confirm": "perhaps later"})
    async with Client(build_server(make_settings()), mode=era, elicitation_callback=person) as client:
        _, result = await plan_then_execute(client, targets)
    assert result.is_error
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_no_answer_in_time_refuses_on_the_legacy_era(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path
) -> None:
    """Claude Desktop's era: the server waits EFILE_CONFIRM_TIMEOUT for a form some clients never render."""
    person = Person(delay=30)
    async with Client(
        build_server(make_settings(confirm_timeout=1.0)), mode="legacy", elicitation_callback=person
    ) as client:
        with anyio.fail_after(10):
            _, result = await plan_then_execute(client, targets)
    assert result.is_error and "did not answer" in text_of(result)
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert audit_lines(audit_path)[-1]["reason"] == "person_no_answer"


async def test_a_client_that_cannot_ask_falls_back_to_the_token_in_auto_mode(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path, era: str
) -> None:
    async with Client(build_server(make_settings()), mode=era) as client:  # no elicitation callback
        _, result = await plan_then_execute(client, targets)
    assert not result.is_error, text_of(result)
    assert next(line for line in audit_lines(audit_path) if line["event"] == "execution")["confirmed_by"] == "token"


async def test_human_mode_fails_closed_when_the_client_cannot_ask(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path, era: str
) -> None:
    async with Client(build_server(make_settings(confirm="human")), mode=era) as client:
        _plan, result = await plan_then_execute(client, targets)
    assert result.is_error and "EFILE_CONFIRM=human" in text_of(result)
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert audit_lines(audit_path)[-1]["reason"] == "person_unreachable"


async def test_human_mode_with_a_capable_client_asks(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], era: str
) -> None:
    person = Person()
    async with Client(build_server(make_settings(confirm="human")), mode=era, elicitation_callback=person) as client:
        _, result = await plan_then_execute(client, targets)
    assert not result.is_error and len(person.asked) == 1


async def test_token_mode_never_asks(make_settings: Any, sandbox: RunningSandbox, targets: list[str], era: str) -> None:
    person = Person("decline")
    async with Client(build_server(make_settings(confirm="token")), mode=era, elicitation_callback=person) as client:
        _, result = await plan_then_execute(client, targets)
    assert not result.is_error and person.asked == []


async def test_a_request_refused_anyway_does_not_bother_the_person(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], era: str
) -> None:
    person = Person()
    async with Client(build_server(make_settings()), mode=era, elicitation_callback=person) as client:
        plan = await call_ok(client, "remove_paths", {"paths": targets})
        for arguments in (
            {"paths": targets, "dry_run": False, "confirmation_token": "efc1.forged.token"},
            {"paths": targets[:1], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
            {"paths": targets, "dry_run": False},
        ):
            result = await client.call_tool("remove_paths", arguments)
            assert result.is_error
    assert person.asked == []
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_the_confirmation_form_is_not_an_agent_argument(client: Client) -> None:
    tool = next(t for t in (await client.list_tools()).tools if t.name == "remove_paths")
    assert set(tool.input_schema["properties"]) == {"paths", "select", "dry_run", "confirmation_token", "detail"}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_over_stdio_the_person_is_asked_and_a_decline_holds(tmp_path: Path, mode: str) -> None:
    from efile_mcp.sandbox import seed_sample_tree

    from .test_stdio import HOME, server_params

    root = seed_sample_tree(tmp_path / "home")
    targets = [f"{HOME}/scratch/run-002", f"{HOME}/scratch/tmp.log"]
    person = Person("decline")
    params = server_params(root, tmp_path / "audit.jsonl", env={"EFILE_CONFIRM": "human"})
    async with Client(params, mode=mode, elicitation_callback=person) as client:
        _, result = await plan_then_execute(client, targets)
        assert result.is_error and "declined" in text_of(result)
        person.action = "accept"
        _, result = await plan_then_execute(client, targets)
        assert not result.is_error, text_of(result)
    assert len(person.asked) == 2
    assert not (root / "scratch" / "run-002").exists() and not (root / "scratch" / "tmp.log").exists()


async def test_a_client_that_answers_the_form_with_an_error_is_refused_and_audited(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path
) -> None:
    async def broken(context: Any, params: types.ElicitRequestParams) -> types.ErrorData:
        return types.ErrorData(code=-32600, message="the window was closed")

    async with Client(build_server(make_settings()), mode="legacy", elicitation_callback=broken) as client:
        _, result = await plan_then_execute(client, targets)
    assert result.is_error and "could not be read" in text_of(result)
    assert audit_lines(audit_path)[-1]["reason"] == "person_invalid_answer"
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_a_sign_in_failure_at_execution_is_an_actionable_tool_error(
    make_settings: Any, sandbox: RunningSandbox, era: str
) -> None:
    settings = make_settings(
        allowed_roots=("~/scratch",), scnet_ac_url="http://127.0.0.1:9", retry_attempts=1, retry_budget=0.5
    )
    target = f"{sandbox.home}/scratch/tmp.log"
    async with Client(build_server(settings), mode=era, elicitation_callback=Person()) as client:
        for arguments in ({"paths": [target]}, {"paths": [target], "dry_run": False, "confirmation_token": "x"}):
            result = await client.call_tool("remove_paths", arguments)
            assert result.is_error and "SCNET_AC_URL" in text_of(result), text_of(result)
    assert sandbox.sandbox.request_counts["async-remove"] == 0


async def test_once_the_person_is_asked_only_their_yes_executes_the_token(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path
) -> None:
    """A second session (no form, auto mode) cannot slip the token through while the person is being asked."""
    server = build_server(make_settings())
    seen: dict[str, Any] = {}

    async with Client(server, mode="legacy") as other:  # declares no elicitation: token alone in auto mode

        class PersonAskedWhileAnotherSessionTries(Person):
            async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
                seen["other"] = await other.call_tool(
                    "remove_paths", {"dry_run": False, "confirmation_token": seen["token"]}
                )
                return await super().__call__(context, params)

        person = PersonAskedWhileAnotherSessionTries()
        async with Client(server, mode="legacy", elicitation_callback=person) as asking:
            plan = await call_ok(asking, "remove_paths", {"paths": targets})
            seen["token"] = plan["confirmation_token"]
            result = await asking.call_tool("remove_paths", {"dry_run": False, "confirmation_token": seen["token"]})
    assert seen["other"].is_error and "only their yes" in text_of(seen["other"])
    assert not result.is_error and result.structured_content["summary"]["removed"] == 2
    executions = [line for line in audit_lines(audit_path) if line["event"] == "execution"]
    assert [line["confirmed_by"] for line in executions] == ["person"]


async def test_no_answer_in_time_spends_the_token(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str]
) -> None:
    person = Person(delay=5)
    secret = "one-secret-for-both-server-runs-0123456789abcdef"
    async with Client(
        build_server(make_settings(confirm_timeout=0.2, confirm_secret=secret)),
        mode="legacy",
        elicitation_callback=person,
    ) as c:
        plan, result = await plan_then_execute(c, targets)
        assert result.is_error and "did not answer" in text_of(result)
    async with Client(build_server(make_settings(confirm_secret=secret)), mode="legacy") as later:  # same store
        again = await later.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert again.is_error and "already used" in text_of(again)
    assert all((sandbox.root / p.removeprefix(sandbox.home + "/")).exists() for p in targets)
