"""The package's modules import each other without cycles (tools/import_graph.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "import_graph.py"


def _graph(package_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(TOOL)] + ([str(package_dir)] if package_dir else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_no_import_cycles():
    result = _graph()
    cycles = [line for line in result.stdout.splitlines() if line.startswith(("cycle", "  e.g."))]
    assert result.returncode == 0, "\n".join(cycles) or result.stderr


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "sub/__init__.py": "",
            "sub/a.py": "def f():\n    from pkg.sub import b\n",
            "sub/b.py": "from . import c\n",
            "sub/c.py": "import pkg.sub.a\n",
            "d.py": "from pkg.sub.a import f\n",
        },
    )
    result = _graph(pkg)
    assert result.returncode == 1
    assert "pkg.sub.a -> pkg.sub.b*" in result.stdout
    assert "pkg.d -> pkg.sub.a" in result.stdout.splitlines()
    assert "cycle among 3 modules: pkg.sub.a, pkg.sub.b, pkg.sub.c" in result.stdout
    assert "e.g. pkg.sub.a -> pkg.sub.b -> pkg.sub.c -> pkg.sub.a" in result.stdout


def test_type_only_imports_make_no_cycle(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.a import X\n"
                "else:\n    import json\n"
            ),
        },
    )
    result = _graph(pkg)
    assert result.returncode == 0, result.stdout
    assert "pkg.a -> pkg.b" in result.stdout.splitlines()
    assert "no import cycles" in result.stdout
