"""The production wheel is pure Python: it builds without a compiler and holds only `connector`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPILED = (".so", ".pyd", ".dylib", ".dll", ".c", ".rs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel` builds from a copy of the project's sources (not the worktree,
    where a build would leave its files)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "connector", source / "connector", ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    command += ["--quiet", "--wheel-dir", str(out), str(source)]
    subprocess.run(command, check=True, timeout=120)
    (found,) = out.glob("*.whl")
    return found


def test_the_wheel_is_for_any_python_3_and_any_platform(wheel: Path) -> None:
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name


def test_the_wheel_holds_no_compiled_code_and_no_development_tools(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    packages = {name.split("/", 1)[0] for name in names if "/" in name}
    assert {name for name in packages if not name.endswith(".dist-info")} == {"connector"}
    assert not [name for name in names if name.endswith(COMPILED)]
    assert not [name for name in names if "outgrow_braze_dev" in name]
    assert "connector/default_mapping.yaml" in names
    assert "connector/mapping.schema.json" in names


def test_building_needs_no_rust() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "rust" not in pyproject.lower()
    assert not (ROOT / "native").exists()
