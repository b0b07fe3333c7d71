"""The MCP Bundle: the manifest validates, packs, holds what the host needs and nothing else, and starts.

Needs `npx` (Node.js) for the official `mcpb` tool and `uv` (a test dependency) to start the bundle
as Claude Desktop's `uv` server type does. CI sets EFILE_REQUIRE_BUNDLE_TOOLS=1, so there a missing
tool fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .source_tree import DECOYS, ROOT, clone_with_decoys, export, project_files

MCPB = "@anthropic-ai/mcpb@2.1.2"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("EFILE_REQUIRE_BUNDLE_TOOLS"):
            pytest.fail(f"{name} is required here (EFILE_REQUIRE_BUNDLE_TOOLS is set) but not found")
        pytest.skip(f"{name} is not installed")
    return found


def pack(npx: str, source: Path, out: Path) -> Path:
    proc = subprocess.run([npx, "-y", MCPB, "pack", str(source), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


#: What the bundle carries: the package and what uv needs to install it (pyproject's readme and
#: license file), the manifest and its icon. Nothing else that git tracks, nothing git does not.
TOP_LEVEL = {"manifest.json", "pyproject.toml", "README.md", "LICENSE", "icon.png"}


def expected_names() -> set[str]:
    return {n for n in project_files() if n.startswith("efile_mcp/") or n in TOP_LEVEL}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone with a virtual environment named `.v/` (and other leftovers) that git does not track."""
    tool("git")
    return clone_with_decoys(tmp_path_factory.mktemp("clone"))


@pytest.fixture(scope="module")
def bundle(clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's way: validate, export what git tracks, pack the export."""
    npx = tool("npx")
    validate = subprocess.run(
        [npx, "-y", MCPB, "validate", "manifest.json"], cwd=clone, capture_output=True, text=True, timeout=300
    )
    assert validate.returncode == 0 and "passes" in validate.stdout, validate.stdout + validate.stderr
    assert "Icon validation passed" in validate.stdout, validate.stdout
    exported = export(clone, tmp_path_factory.mktemp("export") / "efile-mcp")
    return pack(npx, exported, tmp_path_factory.mktemp("bundle") / "efile-mcp.mcpb")


def test_bundle_holds_exactly_the_tracked_package_files_whatever_the_venv_is_called(bundle: Path) -> None:
    with zipfile.ZipFile(bundle) as archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        manifest = json.loads(archive.read("manifest.json"))
        icon = archive.read("icon.png")
    assert sorted(names) == sorted(expected_names())
    assert {"efile_mcp/__main__.py", "efile_mcp/server.py", "efile_mcp/py.typed"} <= set(names)
    assert manifest == json.loads((ROOT / "manifest.json").read_text())
    assert manifest["server"]["type"] == "uv" and manifest["manifest_version"] == "0.4"
    assert manifest["icon"] == "icon.png" and icon.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", icon[16:24]) == (512, 512)  # the size Claude Desktop recommends
    assert bundle.stat().st_size < 500_000  # the decoy venv alone is 2 MB of incompressible bytes


def test_packing_the_clone_itself_still_leaves_out_environments_build_output_and_caches(
    clone: Path, tmp_path: Path
) -> None:
    """For a person who runs `mcpb pack .` in their clone: .mcpbignore is an allowlist, so a virtual
    environment is left out whatever it is called."""
    direct = pack(tool("npx"), clone, tmp_path / "direct.mcpb")
    with zipfile.ZipFile(direct) as archive:
        names = {i.filename for i in archive.infolist() if not i.is_dir()}
    assert not names & set(DECOYS)
    assert names == expected_names()
    assert direct.stat().st_size < 500_000


def host_config(
    manifest: dict[str, object], app: Path, answers: dict[str, str]
) -> tuple[str, list[str], dict[str, str]]:
    """What Claude Desktop runs for this bundle: `${__dirname}` and `${user_config.*}` filled in."""
    server = manifest["server"]
    assert isinstance(server, dict)
    config = server["mcp_config"]
    user_config = manifest["user_config"]
    assert isinstance(user_config, dict)

    def fill(text: str) -> str:
        text = text.replace("${__dirname}", str(app))
        for key, spec in user_config.items():
            default = spec.get("default", "")
            value = answers.get(key, default)
            text = text.replace(
                f"${{user_config.{key}}}", str(value).lower() if isinstance(value, bool) else str(value)
            )
        return text

    return config["command"], [fill(a) for a in config["args"]], {k: fill(v) for k, v in config["env"].items()}


async def test_a_fresh_user_with_ak_sk_and_a_region_installs_the_bundle_and_deletes_a_confirmed_path(
    bundle: Path, tmp_path: Path
) -> None:
    from mcp import Client, StdioServerParameters

    from efile_mcp.sandbox import SandboxConfig, run_sandbox_in_thread, seed_sample_tree

    from .conftest import call_ok

    uv = tool("uv")
    app = tmp_path / "app"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(app)
    manifest = json.loads((app / "manifest.json").read_text())
    root = seed_sample_tree(tmp_path / "home")
    with run_sandbox_in_thread(SandboxConfig(root=root)) as sandbox:
        ac = sandbox.sandbox.config.ac
        command, args, env = host_config(
            manifest,
            app,
            {
                "scnet_user": sandbox.sandbox.config.user,
                "scnet_access_key": ac.access_key,
                "scnet_secret_key": ac.secret_key,
                "scnet_region": "sandbox",
                "allowed_roots": "~/scratch",
            },
        )
        assert command == "uv"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("EFILE_", "SCNET_"))}
        env = (
            inherited
            | env
            | {  # the machine's own environment (certificates, proxies), as a desktop host has
                # Where SCNet is: here the sandbox (the real hosts are the defaults).
                "SCNET_AC_URL": sandbox.base_url,
                "SCNET_API_URL": sandbox.base_url,
                "EFILE_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
                "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
                "VIRTUAL_ENV": "",
            }
        )
        params = StdioServerParameters(command=uv, args=args, env=env)
        async with Client(params, mode="legacy") as client:  # Claude Desktop's protocol era
            offered = [t.name for t in (await client.list_tools()).tools]
            assert offered == [t["name"] for t in manifest["tools"]]
            home = await call_ok(client, "list_files", {})
            target = f"{home['path']}/scratch/run-001"
            plan = await call_ok(client, "remove_paths", {"paths": [target, f"{home['path']}/notes.txt"]})
            assert plan["confirm_paths"] == [target]  # notes.txt is outside ~/scratch
            done = await call_ok(
                client,
                "remove_paths",
                {"paths": [target], "dry_run": False, "confirmation_token": plan["confirmation_token"]},
            )
        # The default mode is quarantine: the folder is moved into its root's quarantine, restorable, not deleted.
        assert [item["status"] for item in done["items"]] == ["quarantined"]
        assert sandbox.sandbox.received_remove_paths == []
        assert not (root / "scratch" / "run-001").exists() and (root / "notes.txt").exists()
        assert (root / "scratch" / ".efile-quarantine" / plan["plan_id"] / "run-001").is_dir()
