"""The packages' imports: no cycles among the modules of the connector or of the development
tools, and no import of the development tools from the connector.

The production package must run where `outgrow_braze_dev` is not installed (the wheel, the
image's runtime stage), so no module of `connector` may import it, not even inside a function.
"""

from __future__ import annotations

from pathlib import Path

from tests.import_cycles import find_cycles, imported_names, modules

ROOT = Path(__file__).resolve().parent.parent
DEV = "outgrow_braze_dev"


def test_the_connector_has_no_import_cycles() -> None:
    assert find_cycles(ROOT, "connector") == []


def test_the_development_tools_have_no_import_cycles() -> None:
    assert find_cycles(ROOT / "devtools", DEV) == []


def test_the_connector_never_imports_the_development_tools() -> None:
    offenders = {
        module: sorted(name for name in imported_names(path, module) if name.split(".")[0] == DEV)
        for module, path in modules(ROOT, "connector").items()
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_cycles_through_function_level_and_relative_imports_are_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "def later() -> None:\n    from .sub.c import run\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "import pkg.a\nimport os\n",
            "pkg/d.py": "from pkg.a import *\nfrom . import e\n",
            "pkg/e.py": "if TYPE_CHECKING:\n    from pkg.d import x\n",
            "pkg/alone.py": "from pkg import a\n",
        },
    )
    assert find_cycles(root, "pkg") == [["pkg.a", "pkg.b", "pkg.sub.c"], ["pkg.d", "pkg.e"]]


def test_a_package_without_cycles_has_none(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "import json\n"},
    )
    assert find_cycles(root, "pkg") == []


def test_an_import_of_the_development_tools_would_be_seen(tmp_path: Path) -> None:
    source = tmp_path / "cli.py"
    source.write_text(f"def main() -> None:\n    from {DEV}.sandbox import app\n", encoding="utf-8")
    assert f"{DEV}.sandbox.app" in imported_names(source, "connector.cli")
