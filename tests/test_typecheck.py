"""Type check of the Blender side (issue #17): mypy over `__init__.py`, addon/, operators/ and panels/ against
fake-bpy-module's stubs, with pyproject.toml's [tool.mypy] settings. Panel draw code never runs headless, so
this is what catches a misspelt layout call, bpy.ops operator, keyword, icon or bpy attribute there.

The add-on imports the engine as `..ml`, so the repository has to be a package: it is checked as
`film_recovery` (its extension id), a folder of links in a temporary directory, whatever the clone's own folder
is called. `python tests/test_typecheck.py` prints the report.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "film_recovery"
CHECKED = ("__init__.py", "addon", "operators", "panels")


def make_package(where: Path, copies: tuple[str, ...] = ()) -> Path:
    """`where/film_recovery`: links to the checked folders and the engine (ml/); those in `copies` are copied."""
    package = where / PACKAGE
    package.mkdir()
    for name in (*CHECKED, "ml"):
        if name not in copies:
            (package / name).symlink_to(ROOT / name)
        elif (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, package / name)
    return package


def run_mypy(where: Path, cache_dir: Path) -> subprocess.CompletedProcess[str]:
    """mypy over the package in `where`, with the repository's configuration."""
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(cache_dir), *(f"{PACKAGE}/{name}" for name in CHECKED)]
    return subprocess.run(command, cwd=where, capture_output=True, text=True, timeout=600)


def _report(result: subprocess.CompletedProcess[str]) -> str:
    # A Literal mismatch (an icon) lists every allowed value: keep each line readable.
    lines = (result.stdout + result.stderr).splitlines()
    return "\n".join(line if len(line) <= 400 else line[:400] + " ..." for line in lines)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for both runs: the second reuses the stubs' analysis (most of the time)."""
    return tmp_path_factory.mktemp("mypy_cache")


def test_blender_side_type_checks(tmp_path: Path, cache_dir: Path) -> None:
    make_package(tmp_path)
    result = run_mypy(tmp_path, cache_dir)
    assert result.returncode == 0, "mypy found problems in the Blender side:\n" + _report(result)


def _mutate(path: Path, old: str, new: str) -> int:
    """Replace the first `old` in `path` by `new`; the line number it is on."""
    text = path.read_text()
    assert old in text, f"{path.name} no longer has {old!r}: pick another line to misspell"
    start = text.index(old)
    path.write_text(text[:start] + new + text[start + len(old):])
    return text.count("\n", 0, start) + 1


def test_the_check_catches_misspellings(tmp_path: Path, cache_dir: Path) -> None:
    """The check bites: misspellings of each kind in a copy of the add-on are each reported, on their line."""
    package = make_package(tmp_path, copies=("panels", "operators"))
    stages, train = package / "panels" / "stages.py", package / "operators" / "train.py"
    mistakes = {
        "a misspelt layout call": (stages, 'layout.prop(fr, "work_dir")', 'layout.proprty(fr, "work_dir")'),
        "a wrong keyword to a UI call": (stages, "box.label(text=label)", "box.label(txt=label)"),
        "a misspelt icon": (stages, 'icon="COLOR"', 'icon="COLOUR"'),
        "an attribute a bpy type lacks": (stages, "context.scene.frame_current", "context.scene.frame_curent"),
        "a misspelt bpy.ops operator": (train, "bpy.ops.wm.url_open(", "bpy.ops.wm.url_opne("),
        "a misspelt Operator method": (train, "self.report(", "self.reprot("),
    }
    lines = {what: (path, _mutate(path, old, new)) for what, (path, old, new) in mistakes.items()}
    result = run_mypy(tmp_path, cache_dir)
    report = _report(result)
    assert result.returncode == 1, report
    reported = {(match[0], int(match[1])) for match in re.findall(r"^film_recovery/(\S+?):(\d+): error:", report, re.M)}
    for what, (path, line) in lines.items():
        where = path.relative_to(package).as_posix()
        assert (where, line) in reported, f"{what} ({where}:{line}) was not reported:\n{report}"
    assert len(reported) == len(lines), f"errors other than the misspellings:\n{report}"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        make_package(Path(folder))
        outcome = run_mypy(Path(folder), ROOT / ".mypy_cache")
        print(outcome.stdout + outcome.stderr, end="")
    sys.exit(outcome.returncode)


# --- what the stubs cannot see: our own operator ids and their properties ---------------------------------------

def _operator_classes() -> dict[str, set[str]]:
    """bl_idname -> property names (class annotations, with those of base classes defined in the add-on)."""
    classes: dict[str, ast.ClassDef] = {}
    for path in [*(ROOT / "operators").glob("*.py"), *(ROOT / "addon").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = node

    def properties(cls: ast.ClassDef) -> set[str]:
        names = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        for base in cls.bases:
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if name in classes and classes[name] is not cls:
                names |= properties(classes[name])
        return names

    ids = {}
    for cls in classes.values():
        for node in cls.body:
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "bl_idname" for t in node.targets)
                    and isinstance(node.value, ast.Constant)):
                ids[node.value.value] = properties(cls)
    return ids


def _operator_call(node: ast.AST) -> str | None:
    """The id of `<layout>.operator("film_recovery.x", ...)`, else None."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "operator"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return node.args[0].value
    return None


def test_every_operator_the_ui_calls_exists_with_the_properties_it_sets() -> None:
    operators = _operator_classes()
    assert len(operators) > 20
    problems = []
    for path in sorted([*(ROOT / "panels").glob("*.py"), *(ROOT / "addon").glob("*.py")]):
        tree = ast.parse(path.read_text())
        bound: dict[str, str] = {}  # op = layout.operator("film_recovery.x") -> {"op": "film_recovery.x"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if (op_id := _operator_call(node.value)) is not None:
                    bound[node.targets[0].id] = op_id
        for node in ast.walk(tree):
            if (op_id := _operator_call(node)) is not None and op_id.startswith("film_recovery."):
                if op_id not in operators:
                    problems.append(f"{path.name}:{node.lineno} calls unknown operator {op_id}")
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if not isinstance(target, ast.Attribute):
                        continue
                    owner = target.value
                    op_id = _operator_call(owner) or (bound.get(owner.id) if isinstance(owner, ast.Name) else None)
                    if op_id in operators and target.attr not in operators[op_id]:
                        problems.append(f"{path.name}:{node.lineno} sets {op_id}.{target.attr}, "
                                        f"which is not one of its properties {sorted(operators[op_id])}")
    assert not problems, problems


def test_every_bpy_ops_film_recovery_call_names_a_registered_operator() -> None:
    operators = _operator_classes()
    problems = []
    for path in sorted([*ROOT.glob("*.py"), *(ROOT / "addon").glob("*.py"), *(ROOT / "operators").glob("*.py"),
                        *(ROOT / "panels").glob("*.py"), *(ROOT / "scripts").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            # bpy.ops.film_recovery.<name>
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "film_recovery" and isinstance(node.value.value, ast.Attribute)
                    and node.value.value.attr == "ops" and f"film_recovery.{node.attr}" not in operators):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} bpy.ops.film_recovery.{node.attr}")
    assert not problems, problems
