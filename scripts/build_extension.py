"""Build and validate the installable extension zip with Blender's official builder.

    .venv/bin/python scripts/build_extension.py [--output-dir dist]

The builder ships inside the bpy wheel (bl_pkg/cli/blender_ext.py); the manifest's
[build] paths_exclude_pattern keeps tests, benchmarks, docs and dev files out of the zip.
Prints the zip's path on the last line.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def builder_script() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("bpy is not installed in this Python: run `bash scripts/dev.sh setup` first.")
    bpy_dir = Path(list(spec.submodule_search_locations)[0])
    found = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit(f"Blender's extension builder was not found under {bpy_dir}.")
    return found[-1]


def build(output_dir: Path) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    zip_path = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    builder = builder_script()
    subprocess.run([sys.executable, str(builder), "build", "--source-dir", str(ROOT),
                    "--output-filepath", str(zip_path)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, str(builder), "validate", str(zip_path)], check=True,
                   stdout=subprocess.DEVNULL)
    return zip_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=str(ROOT / "dist"))
    args = parser.parse_args()
    print(build(Path(args.output_dir)))


if __name__ == "__main__":
    main()
