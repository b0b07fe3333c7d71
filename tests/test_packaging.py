"""What PyPI and a user get: one wheel and one sdist built from a clone that has a stray virtual
environment in it, the wheel installed into a fresh virtual environment, and the installed command
run from there (`--version`, and the demo, which needs no file outside the package).

Needs `build` (a test dependency) and the package index for the wheel's dependencies. CI sets
EFILE_REQUIRE_PACKAGING=1, so there a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import email.parser
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from .source_tree import DECOY_BYTES, DECOYS, ROOT, clone_with_decoys, project_files

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]  # a cold cache downloads the dependencies

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
DIST_INFO = f"efile_mcp-{VERSION}.dist-info"


def require(available: bool, what: str) -> None:
    if not available:
        if os.environ.get("EFILE_REQUIRE_PACKAGING"):
            pytest.fail(f"{what} is required here (EFILE_REQUIRE_PACKAGING is set) but not available")
        pytest.skip(f"{what} is not available")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist): `python -m build` on a clone, so the wheel is built from the sdist, as PyPI users'
    installers would rebuild it."""
    require(importlib.util.find_spec("build") is not None, "the `build` package")
    require(shutil.which("git") is not None, "git")
    clone = clone_with_decoys(tmp_path_factory.mktemp("clone"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(clone)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def package_modules() -> set[str]:
    return {name for name in project_files() if name.startswith("efile_mcp/") and name.endswith(".py")}


def package_assets() -> set[str]:
    """The review page's HTML, CSS and JavaScript: shipped in the package (no CDN on an HPC login node)."""
    return {name for name in project_files() if name.startswith("efile_mcp/review/assets/")}


def test_the_wheel_holds_the_typed_package_and_its_license_and_nothing_else(dists: tuple[Path, Path]) -> None:
    wheel, _ = dists
    assert wheel.name == f"efile_mcp-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.parser.Parser().parsestr(archive.read(f"{DIST_INFO}/METADATA").decode())
        entry_points = archive.read(f"{DIST_INFO}/entry_points.txt").decode()
    package = {n for n in names if not n.startswith(DIST_INFO + "/")}
    assert package_assets() >= {f"efile_mcp/review/assets/page.{ext}" for ext in ("html", "css", "js")}
    assert package == package_modules() | package_assets() | {"efile_mcp/py.typed"}
    assert f"{DIST_INFO}/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith(("tests/", ".v/", "venv", "build/", ".git")) or "__pycache__" in n]
    assert wheel.stat().st_size < 500_000

    assert "efile-mcp = efile_mcp.cli:main" in entry_points
    assert metadata["Name"] == "efile-mcp" and metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT" and metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (11, 12, 13)} <= set(classifiers)
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL"))
    assert urls["Repository"].startswith("https://github.com/") and "Issues" in urls
    assert metadata["Description-Content-Type"] == "text/markdown" and "## Quick start" in metadata.get_payload()


def test_the_sdist_is_the_project_source_without_environments_or_build_output(dists: tuple[Path, Path]) -> None:
    _, sdist = dists
    prefix = f"efile_mcp-{VERSION}/"
    with tarfile.open(sdist) as archive:
        names = {m.name.removeprefix(prefix) for m in archive.getmembers() if m.isfile()}
    assert {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO", "efile_mcp/py.typed"} <= names
    assert package_modules() <= names and "tests/test_packaging.py" in names
    assert not names & set(DECOYS)
    assert not [n for n in names if n.startswith((".v/", "venv", "build/", "dist/", ".git/")) or "__pycache__" in n]
    assert sdist.stat().st_size < DECOY_BYTES / 2


@pytest.fixture(scope="module")
def installed(dists: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only the wheel (and its dependencies from the index) installed;
    returns its bin directory."""
    wheel, _ = dists
    venv = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    # uv (a test dependency) installs like pip, from the same index, and caches across runs: seconds, not minutes.
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    require(uv is not None, "uv")
    assert uv is not None
    proc = subprocess.run(
        [uv, "pip", "install", "--python", str(python), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        env=user_env(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return python.parent


def user_env() -> dict[str, str]:
    """A user's shell: no import path into this checkout, no EFILE_/SCNET_ settings of the developer."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EFILE_", "SCNET_")) and k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }


def run_installed(bin_dir: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "efile-mcp"), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=user_env(),
    )


def test_the_installed_command_prints_its_version_from_the_installed_package(installed: Path, tmp_path: Path) -> None:
    proc = run_installed(installed, "--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"efile-mcp {VERSION}"
    where = subprocess.run(
        [str(installed / "python"), "-c", "import efile_mcp; print(efile_mcp.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=user_env(),
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout + where.stderr


def test_the_demo_runs_from_the_installed_wheel_alone(installed: Path, tmp_path: Path) -> None:
    proc = run_installed(installed, "demo", cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "connected over stdio" in proc.stdout and "already executed" in proc.stdout  # the replayed token
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- the container
# No Docker engine runs in CI: the files are read as Docker and compose read them, and the image's
# command and health check are run here against the same package.

DOCUMENTED_CMD = ["efile-mcp", "--transport", "http", "--host", "0.0.0.0", "--port", "8765"]
SECRET_NAMES = ("TOKEN", "SECRET", "PASSWORD", "ACCESS_KEY", "ORG_ID")


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        keyword, _, rest = current.strip().partition(" ")
        lines.append((keyword.upper(), rest.strip()))
        current = ""
    return lines


def instructions(name: str) -> list[str]:
    return [rest for keyword, rest in dockerfile() if keyword == name]


def healthcheck_command() -> list[str]:
    import json

    (spec,) = instructions("HEALTHCHECK")
    return json.loads(spec[spec.index("CMD") + 3 :])


def test_the_image_runs_the_documented_command_as_a_non_root_user_with_no_secret_inside() -> None:
    import json

    assert all(base.split()[0] == "python:3.12-slim" for base in instructions("FROM"))
    (user,) = instructions("USER")
    assert user not in {"root", "0"} and not user.startswith(("0:", "root:"))
    # USER comes after the last RUN, so the server never runs as root
    keywords = [keyword for keyword, _ in dockerfile()]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert instructions("EXPOSE") == ["8765"]
    assert json.loads(instructions("CMD")[0]) == DOCUMENTED_CMD
    assert "--no-cache-dir" in " ".join(instructions("RUN"))
    baked = " ".join(instructions("ENV") + instructions("ARG"))
    assert not [name for name in SECRET_NAMES if name in baked], baked
    health = " ".join(healthcheck_command())
    assert "Authorization" not in health and "HTTP_TOKEN" not in health

    # The build context is an allowlist holding exactly what the image copies: no venv, whatever its name.
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        src.rstrip("/") for spec in instructions("COPY") if not spec.startswith("--from") for src in spec.split()[:-1]
    }
    assert copied == allowed == {"pyproject.toml", "README.md", "LICENSE", "efile_mcp"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_image_command_needs_allowed_hosts_and_the_health_check_needs_no_token(tmp_path: Path) -> None:
    """The image's CMD on another port, as the container runs it; the HEALTHCHECK against it."""
    import secrets
    import time

    port = free_port()
    command = [sys.executable, "-m", "efile_mcp", *(str(port) if a == "8765" else a for a in DOCUMENTED_CMD[1:])]
    env = user_env() | {
        "PYTHONPATH": str(ROOT),
        "EFILE_STATE_DIR": str(tmp_path),
        "EFILE_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "EFILE_HTTP_TOKEN": secrets.token_hex(16),
        # credentials as the container gets them (sign-in waits for the first tool call)
        "SCNET_USER": "someone",
        "SCNET_ACCESS_KEY": "ak",
        "SCNET_SECRET_KEY": "sk",
        "SCNET_API_URL": "http://127.0.0.1:9",
        "SCNET_AC_URL": "http://127.0.0.1:9",
    }
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "EFILE_HTTP_ALLOWED_HOSTS" in refused.stderr, refused.stderr

    env["EFILE_HTTP_ALLOWED_HOSTS"] = f"localhost:{port},127.0.0.1:{port}"
    check = [sys.executable if a == "python" else a.replace("8765", str(port)) for a in healthcheck_command()]

    def healthy() -> bool:
        return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0

    assert not healthy()  # nothing listens yet
    server = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not healthy():
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.3)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert not healthy()


def compose() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def interpolation(value: str) -> str | None:
    """The variable a compose value comes from (`${NAME}`, `${NAME:?msg}`, `${NAME:-default}`), or None."""
    import re

    match = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}", value)
    return match.group(1) if match else None


def test_compose_runs_two_replicas_behind_one_port_sharing_redis_and_secrets_from_the_environment() -> None:
    require(importlib.util.find_spec("yaml") is not None, "pyyaml")
    services = compose()["services"]
    efile = services["efile"]
    assert efile["build"] == "." and efile["deploy"]["replicas"] == 2
    assert "ports" not in efile  # only the proxy is reachable
    env = efile["environment"]
    assert env["EFILE_STATE_URL"] == "redis://redis:6379/0" and "redis" in services
    assert services["redis"]["image"].startswith("redis:")
    for name in ("EFILE_CONFIRM_SECRET", "EFILE_HTTP_TOKEN"):  # shared by both replicas, required, no default
        assert interpolation(env[name]) == name and ":?" in env[name], env[name]
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if any(secret in key for secret in SECRET_NAMES):
                assert interpolation(str(value)) == key, f"{key} is not read from the environment: {value}"
                assert value.partition(":-")[2] in ("", "}"), f"{key} has a literal default: {value}"

    (proxy,) = [s for s in services.values() if any(str(p).endswith(":8765") for p in s.get("ports", []))]
    conf_mount = next(v for v in proxy["volumes"] if "nginx" in v).split(":")[0]
    conf = (ROOT / conf_mount).read_text()
    assert "server efile:8765" in conf and "proxy_buffering off" in conf and "$http_host" in conf
    assert proxy["depends_on"]["efile"]["condition"] == "service_healthy"

    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert {"EFILE_CONFIRM_SECRET", "EFILE_HTTP_TOKEN"} <= set(example)
    assert all(value == "" for key, value in example.items() if any(s in key for s in SECRET_NAMES))


def test_the_readme_container_section_names_what_the_files_do() -> None:
    page = (ROOT / "docs" / "serving.md").read_text()
    section = page[page.index("## Container") :]
    for needle in (
        "docker compose up",
        "EFILE_CONFIRM_SECRET",
        "EFILE_HTTP_TOKEN",
        "EFILE_HTTP_ALLOWED_HOSTS",
        "redis://redis:6379/0",
        "8765",
        "two replicas",
        "docker build",
        "non-root",
    ):
        assert needle in section, needle


def test_the_readme_install_snippets_parse_and_start_the_published_command() -> None:
    """What a person pastes into Claude Desktop or Cursor is valid JSON that starts `efile-mcp` from the
    project's own repository, with credentials in env and never in args."""
    import json
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Install") :]
    section = section[: section.index("\n## ", 1)]
    (script,) = PYPROJECT["project"]["scripts"]
    repository = PYPROJECT["project"]["urls"]["Repository"]
    servers = [
        json.loads(block)["mcpServers"]["scnet-efile"]
        for block in re.findall(r"```json\n(.*?)```", section, flags=re.S)
    ]
    stdio = [s for s in servers if "command" in s]
    remote = [s for s in servers if "url" in s]
    assert len(stdio) == 2 and len(remote) == 1  # Claude Desktop and Cursor; Cursor over HTTP
    for server in stdio:
        assert server["command"] == "uvx" and server["args"] == ["--from", f"git+{repository}", script]
        assert {"SCNET_ACCESS_KEY", "SCNET_SECRET_KEY", "EFILE_ALLOWED_ROOTS"} <= set(server["env"])
    assert remote[0]["url"] == "http://127.0.0.1:8765/mcp"
    assert remote[0]["headers"]["Authorization"].startswith("Bearer ")
    for needle in (
        f"uvx --from git+{repository} {script}",
        f"uvx --from /path/to/clone {script}",
        f"pipx install git+{repository}",
        f"uvx {script}",
        f"pipx install {script}",
        "claude mcp add --transport http scnet-efile http://127.0.0.1:8765/mcp --header "
        '"Authorization: Bearer <token>"',
        "~/Library/Application Support/Claude/claude_desktop_config.json",
        r"%APPDATA%\Claude\claude_desktop_config.json",
        "~/.cursor/mcp.json",
        ".cursor/mcp.json",
    ):
        assert needle in section, needle
    assert f"-- uvx --from git+{repository} {script}" in section.replace("\\\n  ", "")
