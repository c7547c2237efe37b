#!/usr/bin/env bash
# Two front doors for a fresh machine:
#   bash scripts/dev.sh demo   set up .venv, then run the main job on the built-in sample shot
#   bash scripts/dev.sh test   set up .venv, then run the test suite
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
  fi
  if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements.txt
    touch .venv/.installed
  fi
}

case "${1:-}" in
  setup) setup ;;
  demo)
    setup; shift
    exec .venv/bin/python scripts/film_recovery_batch.py --sample --work-dir work/demo \
      --save work/demo/sample_shot.blend --stages all "$@" ;;
  test)
    setup; shift
    set +e
    .venv/bin/python -m pytest -q "$@"
    rc=$?
    # pytest exits 5 when it collected no tests: that is a failure here, not a pass.
    [ "$rc" -eq 5 ] && echo "no tests were collected" >&2 && exit 1
    exit "$rc" ;;
  *) echo "usage: bash scripts/dev.sh {demo|test|setup} [args]" >&2; exit 2 ;;
esac
