#!/usr/bin/env bash
# The GPU benchmarks in one run on a lent GPU machine (Python 3.12 with torch and scikit-image,
# no bpy, no internet). Writes everything to $OUT/gpu_bench.md as it goes, so a run cut short
# still returns what finished.
#
#   ttb:   time to beat the 3D-LUT baseline: the sample shot generated there at 2048x1556 (24
#          frames, scikit-image), small position-aware bilateral on CUDA, at most $TTB_SECONDS;
#   host:  host CPU per frame of inference (decode + archival encode) on that machine's cores,
#          before/after codecs, and the frames/s ceiling it sets (bench/bench_host.py, ~30 s);
#   infer: end-to-end inference at 2048x1556 and 4096x2160 ($INFER_FRAMES frames after 4 warm-up,
#          small UNet and small bilateral, archival ACES EXR only, ZIP then PIZ, in /dev/shm);
#   field: the field corpus's chroma kinds ($FIELD_KINDS) at $FIELD_SIZE (2k or small) through the
#          engine CLI door (bench/field.py) with the product's training defaults (small UNet, 2000
#          steps of batch 8 x 128^2, validated every 100) on CUDA, $FIELD_RUNS runs over different
#          kinds at once (one GPU, the host's cores shared); writes field_$FIELD_SIZE.md and .json.
# SECTIONS picks them (default: the first three, in that order; field runs when named).
#
# OpenImageIO, PyOpenColorIO and OpenEXR are not on that machine: they travel as cp312 wheels in
# .whl/bench (git-ignored; 16 MB). Make them here once, in the repo root:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl/bench openimageio==3.0.21.0 opencolorio==2.6.0 openexr==3.5.3
# The run tool's call (about 3 minutes of command after the machine starts):
#   command: bash bench/gpu_suite.sh      carry: [".whl/bench"]      timeout_s: 260
# Inference only (about 1.5 minutes): SECTIONS=host,infer bash bench/gpu_suite.sh
# #14's training-time figure for all ten chroma kinds (the 2K corpus spends most of a run in CPU
# stages and did not finish in one call; the small one does, each kind's train stage timed):
#   command: SECTIONS=field FIELD_SIZE=small FIELD_RUNS=2 FIELD_SECONDS=480 bash bench/gpu_suite.sh
#   carry: [".whl/bench"]      timeout_s: 540
#
# Smoke test on this CPU (tiny sizes, the dev venv, nothing installed):
#   OUT=/tmp/gpu_smoke bash bench/gpu_suite.sh --cpu
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_bench_out}
mkdir -p "$OUT"
REPORT="$OUT/gpu_bench.md"  # the markdown (stdout)
LOG="$OUT/gpu_bench.log"      # progress and notes (stderr), also shown live
TTB_SECONDS=${TTB_SECONDS:-60}
INFER_FRAMES=${INFER_FRAMES:-24}
SECTIONS=${SECTIONS:-ttb,host,infer}
FIELD_KINDS=${FIELD_KINDS:-grey_edge,dark_edges,night,high_key,sky_wall,pal_speedup,ntsc_pulldown,pan_scan,turning,pillarbox_grade}
FIELD_RUNS=${FIELD_RUNS:-5}
FIELD_SIZE=${FIELD_SIZE:-2k}
FIELD_SECONDS=${FIELD_SECONDS:-400}  # each run stops here; what it finished (field.json per shot) is kept
export PYTHONUNBUFFERED=1

if [ "${1:-}" = "--cpu" ]; then
    PY=${PY:-.venv/bin/python}
    TTB=(--device cpu --size 320x180 --frames 12 --max-seconds 10 --steps 200 --crop 64 --batch 4)
    INFER=(--device cpu --sizes 256x194,512x270 --frames 4 --warmup 1)
    HOST=(--sizes 256x194,512x270 --frames 2)
    FIELD=(--steps 20 --crop 64 --batch 4 --validate-every 10)
    FIELD_SIZE=small
    SCRATCH=/tmp
else
    PY=python3
    WHEELS=${WHEELS:-.whl/bench}
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: carry it (see the header)" | tee "$REPORT"; exit 2; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || exit 3
    export PYTHONPATH=/tmp/site
    TTB=(--device cuda --size 2048x1556 --frames 24 --max-seconds "$TTB_SECONDS")
    INFER=(--device cuda --sizes 2048x1556,4096x2160 --frames "$INFER_FRAMES" --warmup 4)
    HOST=(--sizes 2048x1556,4096x2160 --frames 4 --cores "$(nproc)")
    FIELD=(--model unet --steps 2000 --crop 128 --batch 8 --validate-every 100)
    SCRATCH=/dev/shm
fi

{
    echo "# GPU benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    $PY -c "import platform, numpy, torch, OpenImageIO as oiio, PyOpenColorIO as ocio, OpenEXR
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
print(f'GPU: {gpu}; Python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, '
      f'OpenImageIO {oiio.VERSION_STRING}, OpenColorIO {ocio.__version__}, OpenEXR {OpenEXR.__version__}')" 2>&1
    echo "Host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo
} | tee "$REPORT"
$PY -c "import skimage" 2>/dev/null || echo "scikit-image is missing: the sample shot cannot be generated here; \
pass --sample-dir to bench_time_to_beat.py with a sample generated elsewhere." | tee -a "$REPORT"

if [[ ",$SECTIONS," == *",ttb,"* ]]; then
    start=$SECONDS
    timeout $((TTB_SECONDS + 90)) $PY bench/bench_time_to_beat.py "${TTB[@]}" --scratch "$SCRATCH" 2> >(tee -a "$LOG" >&2) | tee -a "$REPORT"
    echo "(time-to-beat section: $((SECONDS - start)) s wall, sample generation included)" | tee -a "$REPORT"
fi

if [[ ",$SECTIONS," == *",host,"* ]]; then
    start=$SECONDS
    timeout 90 $PY bench/bench_host.py "${HOST[@]}" --scratch "$SCRATCH" 2> >(tee -a "$LOG" >&2) | tee -a "$REPORT"
    echo "(host section: $((SECONDS - start)) s wall)" | tee -a "$REPORT"
fi

if [[ ",$SECTIONS," == *",infer,"* ]]; then
    for compression in zip piz; do
        start=$SECONDS
        # the product's default grain only (the CPU run compares clean with keep_source)
        timeout 90 $PY bench/bench_infer.py "${INFER[@]}" --no-display --compression "$compression" --grain clean \
            --out "$SCRATCH/bench_infer" 2> >(tee -a "$LOG" >&2) | tee -a "$REPORT"
        echo "(inference section, $compression: $((SECONDS - start)) s wall)" | tee -a "$REPORT"
    done
fi

if [[ ",$SECTIONS," == *",field,"* ]]; then
    start=$SECONDS
    IFS=, read -r -a kinds <<< "$FIELD_KINDS"
    FIELD_DIR="$SCRATCH/gpu_field"
    rm -rf "$FIELD_DIR"
    mkdir -p "$FIELD_DIR"
    threads=$(( $(nproc) / FIELD_RUNS > 1 ? $(nproc) / FIELD_RUNS : 1 ))  # the host's cores shared out
    for ((i = 0; i < FIELD_RUNS && i < ${#kinds[@]}; i++)); do
        group=$(for ((k = i; k < ${#kinds[@]}; k += FIELD_RUNS)); do printf '%s,' "${kinds[k]}"; done)
        OMP_NUM_THREADS=$threads timeout "$FIELD_SECONDS" $PY bench/field.py --out "$FIELD_DIR/run_$i" \
            --kinds "${group%,}" --doors cli --lean --size "$FIELD_SIZE" "${FIELD[@]}" > "$FIELD_DIR/run_$i.md" 2> >(sed "s/^/[run $i] /" | tee -a "$LOG" >&2) &
    done
    wait
    runs=("$FIELD_DIR"/run_*/field.json)
    $PY bench/field.py --merge "${runs[@]}" --out "$FIELD_DIR/all" > "$OUT/field_$FIELD_SIZE.md" 2>> "$LOG"
    cp "$FIELD_DIR/all/field.json" "$OUT/field_$FIELD_SIZE.json" 2>/dev/null
    tee -a "$REPORT" < "$OUT/field_$FIELD_SIZE.md"
    echo "(field section: $((SECONDS - start)) s wall)" | tee -a "$REPORT"
fi
