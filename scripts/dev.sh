#!/usr/bin/env bash
# Two front doors for a fresh machine:
#   bash scripts/dev.sh demo   set up .venv, then run the main job on the built-in sample shot
#                              (`demo --branch spatial`: the spatial sample, into work/demo-spatial)
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

# The report's browser test (tests/test_report_browser.py) opens the HTML report in a headless
# Chromium: Debian's package, installed here when missing (as root, with apt); else the test skips.
browser() {
  command -v chromium >/dev/null && return
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
      || echo "could not install chromium: the browser test will be skipped" >&2
  else
    echo "no chromium (install Debian's chromium package): the browser test will be skipped" >&2
  fi
}

case "${1:-}" in
  setup) setup ;;
  demo)
    setup; shift
    # `demo --branch spatial`: the spatial sample (soft Source, sharper Reference) in its own folder,
    # so the chroma demo's dataset and model are left as they are.
    demo_dir=work/demo
    for arg in "$@"; do [ "$arg" = spatial ] && demo_dir=work/demo-spatial; done
    exec .venv/bin/python scripts/film_recovery_batch.py --sample --work-dir "$demo_dir" \
      --save "$demo_dir/sample_shot.blend" --stages all "$@" ;;
  test)
    setup; browser; shift
    set +e
    # The slowest tests are listed so the suite's time (CI: 2 cores, kept well under 20 min) can be watched.
    .venv/bin/python -m pytest -q --durations=15 "$@"
    rc=$?
    # pytest exits 5 when it collected no tests: that is a failure here, not a pass.
    [ "$rc" -eq 5 ] && echo "no tests were collected" >&2 && exit 1
    exit "$rc" ;;
  *) echo "usage: bash scripts/dev.sh {demo|test|setup} [args]" >&2; exit 2 ;;
esac
