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

pytestmark = pytest.mark.packaging

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
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def package_modules() -> set[str]:
    return {name for name in project_files() if name.startswith("efile_mcp/") and name.endswith(".py")}


def test_the_wheel_holds_the_typed_package_and_its_license_and_nothing_else(dists: tuple[Path, Path]) -> None:
    wheel, _ = dists
    assert wheel.name == f"efile_mcp-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.parser.Parser().parsestr(archive.read(f"{DIST_INFO}/METADATA").decode())
        entry_points = archive.read(f"{DIST_INFO}/entry_points.txt").decode()
    package = {n for n in names if not n.startswith(DIST_INFO + "/")}
    assert package == package_modules() | {"efile_mcp/py.typed"}
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
        capture_output=True, text=True, timeout=600, env=user_env(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return python.parent


def user_env() -> dict[str, str]:
    """A user's shell: no import path into this checkout, no EFILE_/SCNET_ settings of the developer."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("EFILE_", "SCNET_")) and k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}


def run_installed(bin_dir: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "efile-mcp"), *args], cwd=cwd, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, env=user_env(),
    )


def test_the_installed_command_prints_its_version_from_the_installed_package(installed: Path, tmp_path: Path) -> None:
    proc = run_installed(installed, "--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"efile-mcp {VERSION}"
    where = subprocess.run(
        [str(installed / "python"), "-c", "import efile_mcp; print(efile_mcp.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=user_env(),
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout + where.stderr


def test_the_demo_runs_from_the_installed_wheel_alone(installed: Path, tmp_path: Path) -> None:
    proc = run_installed(installed, "demo", cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "connected over stdio" in proc.stdout and "already used" in proc.stdout
    assert "Traceback" not in proc.stderr
