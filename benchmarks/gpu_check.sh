#!/usr/bin/env bash
# The whole GPU check in one run, from the repository root on a machine with an NVIDIA GPU:
#
#     bash benchmarks/gpu_check.sh            # logs into $OUT (default /tmp/minidl_gpu_check)
#
# 1. the machine: nvidia-smi, Python and library versions            -> $OUT/env.txt
# 2. the GPU tests (tests/gpu, marked gpu)                            -> $OUT/tests_gpu.log
# 3. the torchvision weight-compatibility tests (tests/models)        -> $OUT/tests_torchvision.log
#    and the Winograd tests on the GPU (gpu-marked)                   -> appended to $OUT/tests_gpu.log
# 4. the benchmark against PyTorch, fp32 then TF32 (--quick: 2 warm-up, 10 timed steps; VGG16 also
#    with Winograd 3x3 convolutions)
#                                                                      -> $OUT/bench.txt, $OUT/gpu_bench.json
# 5. peak GPU memory of the first training step, minidl vs PyTorch (benchmarks/memory.py; VGG16 b64
#    and ResNet-50; the target is VGG16 <= 1.2x)                                   -> appended to $OUT/bench.txt
# 6. per-op profiles of minidl's VGG16 and ResNet-50 steps            -> $OUT/profile.txt, $OUT/profile.json,
#                                                                         $OUT/profile_resnet50.txt
# Every step is bounded by `timeout` (95 + 45 + 40 + 170 + 60 + 20 + 20 s, each killed 5 s after its limit),
# so the whole script stays under about 7.5 minutes; 8 files (the device tool returns at most 8), no folders. A step cut short keeps what it
# wrote (the benchmark rewrites its JSON after every row, fp32 rows first).
# The CPU kernels (Numba) are compiled on first use inside step 2: about a minute of it.
set -u -o pipefail
export PYTHONPATH=.
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/minidl_gpu_check}
mkdir -p "$OUT"
T0=$(date +%s)
declare -a SUMMARY=()

step() {  # step NAME SECONDS LOGFILE COMMAND...: run bounded, tee the log, record rc and time
    local name=$1 limit=$2 log=$3
    shift 3
    local t=$(date +%s)
    echo "=== $name (at most ${limit}s): $*" | tee -a "$log"
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    local note=""
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && note=" (TIMED OUT)"
    SUMMARY+=("$name: rc=$rc$note, $(( $(date +%s) - t ))s")
}

{
    echo "date: $(date -u +%FT%TZ)"
    nvidia-smi || echo "nvidia-smi failed"
    python3 - <<'EOF'
import platform, sys
print("python", sys.version.split()[0], platform.machine())
for name in ("numpy", "numba", "cupy", "torch", "torchvision", "pytest"):
    try:
        mod = __import__(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(name, "MISSING", type(e).__name__, e)
try:
    import cupy
    print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
    print("device", cupy.cuda.runtime.getDeviceProperties(0)["name"], "cc", cupy.cuda.Device(0).compute_capability)
except Exception as e:
    print("cupy device query failed:", type(e).__name__, e)
import minidl.backend as b
print("minidl gpu_unavailable_reason:", b.gpu_unavailable_reason())
EOF
} 2>&1 | tee "$OUT/env.txt"

# --maxfail rather than -x: one device run should show every broken op, not only the first
step "gpu tests" 95 "$OUT/tests_gpu.log" \
    python3 -m pytest tests/gpu -m gpu -q -rfEs --maxfail=10 -p no:cacheprovider
if ls tests/models/*.py >/dev/null 2>&1; then
    step "torchvision tests" 45 "$OUT/tests_torchvision.log" \
        python3 -m pytest tests/models -k torchvision -q -rfEs -p no:cacheprovider
else
    SUMMARY+=("torchvision tests: skipped, tests/models has no test files")
fi
step "winograd gpu tests" 40 "$OUT/tests_gpu.log" \
    python3 -m pytest tests/functional/test_conv_winograd.py -m gpu -q -rfEs -p no:cacheprovider
step "benchmark" 170 "$OUT/bench.txt" \
    python3 benchmarks/gpu.py --quick --json "$OUT/gpu_bench.json"
step "memory" 60 "$OUT/bench.txt" \
    python3 benchmarks/memory.py --device cuda --models vgg16 resnet50
step "profile vgg16" 20 "$OUT/profile.txt" \
    python3 benchmarks/gpu.py --profile vgg16 --json "$OUT/profile.json"
step "profile resnet50" 20 "$OUT/profile_resnet50.txt" \
    python3 benchmarks/gpu.py --profile resnet50

echo
echo "=== summary ($(( $(date +%s) - T0 ))s in all)"
for line in "${SUMMARY[@]}"; do echo "$line"; done
for f in tests_gpu.log tests_torchvision.log; do
    [ -f "$OUT/$f" ] && echo "$f: $(grep -E '(passed|failed|error|skipped|no tests ran)' "$OUT/$f" | tail -1)"
done
exit 0
