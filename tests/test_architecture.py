"""The code's boundaries, checked on the source: what imports what, and how long a unit may grow.

- The engine (`ml/`) never imports bpy.
- torch and safetensors are imported only inside `ml/neural/`, so every other engine module loads in
  a Python without torch (Blender's own): checked by importing them all with torch made unimportable.
- Dependencies point one way: panels -> operators -> addon -> ml.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "ml"
TORCH_PACKAGE = ENGINE / "neural"
TORCH_MODULES = {"torch", "safetensors"}
# Modules that only *probe* for torch, inside a function, to tell the user whether this Python has it.
TORCH_PROBES = {ENGINE / "commands" / "__init__.py", ENGINE / "commands" / "env.py"}


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, module, relative level) of every import in a file, top level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or "", node.level))
    return found


def _engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def test_the_engine_never_imports_bpy():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in _engine_files() for line, name, level in _imports(path)
                 if level == 0 and name.split(".")[0] in {"bpy", "bmesh", "mathutils"}]
    assert not offenders, offenders


def test_torch_is_imported_only_inside_ml_neural():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in _engine_files()
                 if TORCH_PACKAGE not in path.parents and path not in TORCH_PROBES
                 for line, name, level in _imports(path)
                 if level == 0 and name.split(".")[0] in TORCH_MODULES]
    assert not offenders, offenders
    # and the package really holds the torch side: each of its modules needs torch
    for path in sorted(TORCH_PACKAGE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        reaches_torch = any(level == 0 and name.split(".")[0] in TORCH_MODULES or level == 1
                            for _line, name, level in _imports(path))
        assert reaches_torch, f"{path.relative_to(ROOT)} needs no torch: it belongs outside ml/neural/"


def test_every_engine_module_outside_ml_neural_imports_without_torch():
    modules = [".".join(path.relative_to(ROOT).with_suffix("").parts) for path in _engine_files()
               if TORCH_PACKAGE not in path.parents and path.name != "__main__.py"]
    modules = [name.removesuffix(".__init__") for name in modules]
    script = (
        "import importlib, sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'safetensors'):\n"
        "            raise ImportError(f'{name} is blocked: this stands for a Python without torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(len([m for m in sys.modules if m.startswith('ml.neural')]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    # importing the numpy side never drags the torch package in
    assert done.stdout.strip() == "0", done.stdout


def test_dependencies_point_one_way():
    layers = ["panels", "operators", "addon", "ml"]  # each may import only those after it
    offenders = []
    for rank, layer in enumerate(layers):
        forbidden = set(layers[:rank])  # the layers that may import this one
        for path in sorted((ROOT / layer).rglob("*.py")):
            for line, name, level in _imports(path):
                if level == 0:
                    continue
                # a relative import's first part names the top-level folder when it climbs out of this one
                depth = len(path.relative_to(ROOT).parts) - 1
                if level > depth:
                    target = name.split(".")[0]
                    if target in forbidden:
                        offenders.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not offenders, offenders


MAX_FUNCTION_LINES = 80
LONG_REASON = "# long function:"  # on the line above a def: why this one may run longer


def test_no_engine_function_runs_over_80_lines_without_a_written_reason():
    offenders = []
    for path in _engine_files():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            reason = lines[first - 2].strip() if first >= 2 else ""
            if length > MAX_FUNCTION_LINES and not reason.startswith(LONG_REASON):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} is {length} lines")
    assert not offenders, "split these into named phases, or write why above the def " \
                          f"('{LONG_REASON} ...'): {offenders}"
