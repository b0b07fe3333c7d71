"""The person confirms (or not) through the client's form, in both protocol eras; nothing runs without a yes.

Waiting, not burning: a form that goes unanswered, is cancelled or answered unreadably is no decision. The call
answers that the plan waits for the person and the token stays valid; a decision from another channel (here the
terminal's, recorded in the state store as `efile-mcp approve` does) lets the next call with the same token run.
Only the person's explicit no (decline, or the box left unticked) spends the token.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client

from efile_mcp.guard.ports import Decision
from efile_mcp.guard.store import open_store
from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server

from ..conftest import audit_lines, call_ok


class Person:
    """An elicitation callback that answers as told and remembers what it was shown."""

    def __init__(
        self, action: str = "accept", content: dict[str, Any] | None = None, never_answers: bool = False
    ) -> None:
        self.action = action
        self.content = {"confirm": True} if content is None else content
        self.never_answers = never_answers
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        if self.never_answers:  # the form is shown and never filled in: the server's timeout decides
            await anyio.sleep_forever()
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


async def approve_in_terminal(audit_path: Path, plan_id: str) -> None:
    """What `efile-mcp approve` records: the person's yes, in the server's own state store."""
    store = open_store(None, audit_path.parent)
    try:
        await store.decide(plan_id, time.time() + 900, Decision("approved", "terminal", at=time.time()))
    finally:
        await store.aclose()


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
    assert execution[0]["confirmed_by"] == "client_form"  # a client said yes: not proof that a person saw it


@pytest.mark.parametrize(
    ("person", "code"),
    [
        (Person("decline"), "person_declined"),
        (Person("accept", {"confirm": False}), "person_declined"),
    ],
    ids=["decline", "unticked"],
)
async def test_no_from_the_person_refuses_and_spends_the_token(
    make_settings: Any,
    sandbox: RunningSandbox,
    targets: list[str],
    audit_path: Path,
    era: str,
    person: Person,
    code: str,
) -> None:
    async with Client(build_server(make_settings()), mode=era, elicitation_callback=person) as client:
        plan, result = await plan_then_execute(client, targets)
        assert result.is_error and "nothing was deleted" in text_of(result)
        again = await client.call_tool(
            "remove_paths", {"paths": targets, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    # The agent cannot simply ask again: the person's no holds, on every later call.
    assert again.is_error and "declined" in text_of(again) and "spent" in text_of(again)
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert audit_lines(audit_path)[-2]["reason"] == code


@pytest.mark.parametrize("answer", ["cancel", "unreadable"])
async def test_a_cancelled_or_unreadable_form_is_no_decision_and_the_token_waits(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path, era: str, answer: str
) -> None:
    """Some clients dismiss forms they never drew: that must not decide for the person, nor burn the token."""
    person = Person("cancel") if answer == "cancel" else Person("accept", {"confirm": "perhaps later"})
    async with Client(
        build_server(make_settings(confirm_timeout=0.3)), mode=era, elicitation_callback=person
    ) as client:
        plan, result = await plan_then_execute(client, targets)
        if era == "auto" and answer == "unreadable":
            # 2026-07-28: the SDK itself refuses an answer that does not fit the form, before the tool body runs.
            assert result.is_error and "does not match the requested schema" in text_of(result)
        else:
            assert result.is_error and "waiting for the person" in text_of(result), text_of(result)
            assert "not spent" in text_of(result) and "efile-mcp approve" in text_of(result)
            assert audit_lines(audit_path)[-1]["reason"] == "awaiting_person"
        assert sandbox.sandbox.request_counts["async-remove"] == 0
        await approve_in_terminal(audit_path, plan["plan_id"])
        done = await client.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert not done.is_error, text_of(done)
    assert done.structured_content and done.structured_content["summary"]["removed"] == 2
    forms = [question for question in person.asked if "Delete them?" in question]
    assert len(forms) == 1  # asked once: the second call waits for the decision, no form again
    execution = [line for line in audit_lines(audit_path) if line["event"] == "execution"]
    assert execution[0]["confirmed_by"] == "terminal"


async def test_no_answer_in_time_waits_on_the_legacy_era(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path
) -> None:
    """Claude Desktop's era: the server waits EFILE_CONFIRM_TIMEOUT for a form some clients never render."""
    person = Person(never_answers=True)
    async with Client(
        build_server(make_settings(confirm_timeout=1.0)), mode="legacy", elicitation_callback=person
    ) as client:
        with anyio.fail_after(10):
            _, result = await plan_then_execute(client, targets)
    assert result.is_error and "waiting for the person" in text_of(result)
    assert "http" not in text_of(result)  # where to decide, never a URL the agent could open
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert audit_lines(audit_path)[-1]["reason"] == "awaiting_person"


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
    secret = "one-secret-for-both-server-runs-0123456789abcdef"
    async with Client(build_server(make_settings(confirm="human", confirm_secret=secret)), mode=era) as client:
        _plan, result = await plan_then_execute(client, targets)
    assert result.is_error and "EFILE_CONFIRM=human" in text_of(result) and "not spent" in text_of(result)
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert audit_lines(audit_path)[-1]["reason"] == "person_unreachable"
    # The terminal reaches the person where the client cannot: the same token then runs.
    async with Client(build_server(make_settings(confirm="human", confirm_secret=secret)), mode=era) as client:
        await approve_in_terminal(audit_path, _plan["plan_id"])
        done = await client.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": _plan["confirmation_token"]}
        )
    assert not done.is_error, text_of(done)


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
    assert set(tool.input_schema["properties"]) == {
        "paths",
        "select",
        "dry_run",
        "confirmation_token",
        "detail",
        "mode",
        "resume",
    }


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


async def test_a_client_that_answers_the_form_with_an_error_waits_for_the_person(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path
) -> None:
    async def broken(context: Any, params: types.ElicitRequestParams) -> types.ErrorData:
        return types.ErrorData(code=-32600, message="the window was closed")

    async with Client(
        build_server(make_settings(confirm_timeout=0.3)), mode="legacy", elicitation_callback=broken
    ) as client:
        _, result = await plan_then_execute(client, targets)
    assert result.is_error and "waiting for the person" in text_of(result)
    assert audit_lines(audit_path)[-1]["reason"] == "awaiting_person"
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
    assert seen["other"].is_error and "another session is asking the person" in text_of(seen["other"])
    assert not result.is_error and result.structured_content["summary"]["removed"] == 2
    executions = [line for line in audit_lines(audit_path) if line["event"] == "execution"]
    assert [line["confirmed_by"] for line in executions] == ["client_form"]


async def test_no_answer_in_time_keeps_the_token_for_the_persons_decision_elsewhere(
    make_settings: Any, sandbox: RunningSandbox, targets: list[str], audit_path: Path
) -> None:
    """The form timed out; a later server (same store, same secret) runs the token once the person approved."""
    person = Person(never_answers=True)
    secret = "one-secret-for-both-server-runs-0123456789abcdef"
    async with Client(
        build_server(make_settings(confirm_timeout=0.2, confirm_secret=secret)),
        mode="legacy",
        elicitation_callback=person,
    ) as c:
        plan, result = await plan_then_execute(c, targets)
        assert result.is_error and "waiting for the person" in text_of(result)
    assert all((sandbox.root / p.removeprefix(sandbox.home + "/")).exists() for p in targets)
    async with Client(build_server(make_settings(confirm_secret=secret)), mode="legacy") as later:  # same store
        waiting = await later.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
        # Another session: the plan is being asked about in the first one, and only the person may release it.
        assert waiting.is_error and "another session" in text_of(waiting)
        await approve_in_terminal(audit_path, plan["plan_id"])
        done = await later.call_tool(
            "remove_paths", {"dry_run": False, "confirmation_token": plan["confirmation_token"]}
        )
    assert not done.is_error, text_of(done)
    assert not any((sandbox.root / p.removeprefix(sandbox.home + "/")).exists() for p in targets)


async def test_over_http_a_self_answering_session_cannot_answer_for_the_person_asked_in_another(
    sandbox: RunningSandbox, targets: list[str], tmp_path: Path
) -> None:
    """The attack of issue 13: while session A's person is asked, session B (its client says yes to every form)
    tries the same token over HTTP. B is refused; A's person then decides."""
    from ..conftest import call_error
    from .test_http import connect, http_server, settings_env

    env = settings_env(
        sandbox,
        tmp_path / "audit.jsonl",
        EFILE_CONFIRM="human",
        EFILE_REMOVE_MODE="delete",
        EFILE_REVIEW_BROWSER="never",
    )
    seen: dict[str, Any] = {}
    with http_server(env=env) as url:
        async with connect(url, mode="legacy", elicitation_callback=Person()) as b:

            class PersonWhileBTries(Person):
                async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
                    seen["b"] = await call_error(b, "remove_paths", {"dry_run": False, "confirmation_token": seen["t"]})
                    return await super().__call__(context, params)

            async with connect(url, mode="legacy", elicitation_callback=PersonWhileBTries()) as a:
                plan = await call_ok(a, "remove_paths", {"paths": targets})
                seen["t"] = plan["confirmation_token"]
                done = await call_ok(a, "remove_paths", {"dry_run": False, "confirmation_token": seen["t"]})
    assert "another session is asking the person" in seen["b"] and "nothing was deleted" in seen["b"]
    assert done["summary"]["removed"] == 2
    executions = [line for line in audit_lines(tmp_path / "audit.jsonl") if line["event"] == "execution"]
    assert [line["confirmed_by"] for line in executions] == ["client_form"]
