"""Read tools count what lies inside protected folders but do not name it (EFILE_SHOW_PROTECTED names it):
`find_paths ~/.ssh` must not list `id_ed25519`, nor `find_paths ~ name=*.key` a `.gnupg` key's name."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.server import build_server

SECRET_NAMES = ("id_ed25519", "0A1B2C3D.key")


@pytest.fixture
def keys(sandbox: RunningSandbox) -> None:
    (sandbox.root / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    private = sandbox.root / ".gnupg" / "private-keys-v1.d"
    private.mkdir(parents=True)
    (private / "0A1B2C3D.key").write_text("(private-key …)\n")
    (sandbox.root / "projects" / "paper.key").write_text("a Keynote file, not a secret\n")


async def _answers(make_settings: Any, sandbox: RunningSandbox, **settings: Any) -> dict[str, dict[str, Any]]:
    """Each answer's structured content, with its text (what a host that reads only text shows) under "text"."""
    home = sandbox.home
    async with Client(build_server(make_settings(**settings))) as client:

        async def call_ok(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            result = await client.call_tool(name, arguments)
            assert not result.is_error and result.structured_content is not None, result.content
            text = " ".join(getattr(block, "text", "") for block in result.content)
            return {**result.structured_content, "text": text}

        return {
            "find ssh": await call_ok("find_paths", {"path": f"{home}/.ssh"}),
            "find keys": await call_ok("find_paths", {"path": home, "name": "*.key"}),
            "list ssh": await call_ok("list_files", {"path": f"{home}/.ssh"}),
            "list gnupg": await call_ok("list_files", {"path": f"{home}/.gnupg/private-keys-v1.d"}),
            "usage gnupg": await call_ok("disk_usage", {"path": f"{home}/.gnupg"}),
            "list home": await call_ok("list_files", {"path": home}),
        }


@pytest.mark.usefixtures("keys")
async def test_names_inside_protected_folders_are_counted_not_shown(
    make_settings: Any, sandbox: RunningSandbox
) -> None:
    answers = await _answers(make_settings, sandbox)
    for what, answer in answers.items():
        text = json.dumps(answer, ensure_ascii=False)
        for secret in (*SECRET_NAMES, "authorized_keys"):
            assert secret not in text, (what, secret)
    assert answers["find ssh"]["protected_hidden"]["count"] == 2  # authorized_keys and id_ed25519
    assert "EFILE_SHOW_PROTECTED" in answers["find ssh"]["protected_hidden"]["note"]
    keys = answers["find keys"]
    assert [m["path"].rsplit("/", 1)[1] for m in keys["matches"]] == ["paper.key"]  # a key outside: shown
    assert keys["protected_hidden"]["count"] == 1 and keys["protected_hidden"]["size"] > 0
    assert answers["list ssh"]["entries"] == [] and answers["list ssh"]["protected_hidden"]["count"] == 2
    assert answers["list gnupg"]["protected_hidden"]["count"] == 1
    usage = answers["usage gnupg"]
    assert usage["children"] == [] and usage["total_size"] > 0 and usage["protected_hidden"]["count"] == 1
    # The protected folders themselves are named where they are (their names are public: storage_status).
    assert {".ssh", ".gnupg"} <= {e["name"] for e in answers["list home"]["entries"]}
    assert "protected_hidden" not in answers["list home"]
    assert "inside protected folders" in answers["find keys"]["text"]


@pytest.mark.usefixtures("keys")
async def test_efile_show_protected_names_them(make_settings: Any, sandbox: RunningSandbox) -> None:
    answers = await _answers(make_settings, sandbox, show_protected=True)
    assert "id_ed25519" in json.dumps(answers["find ssh"]) and "0A1B2C3D.key" in json.dumps(answers["find keys"])
    assert all("protected_hidden" not in answer for answer in answers.values())
