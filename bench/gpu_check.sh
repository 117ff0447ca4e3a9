#!/usr/bin/env bash
# nanochat_bpb's first contact with a GPU: one H100/H200, Python 3.12 with a CUDA torch already
# installed (it may be older than the one CI uses: any torch >= 2.5), and no network.
#
#   bash bench/gpu_check.sh --wheels WHEELS_DIR   # install offline, prepare, one 300 s baseline
#   bash bench/gpu_check.sh --tiny --no-install   # the same, shrunk to run on a CPU in minutes
#
# Steps: install the project from the wheel folder (pip, --no-index: nothing is fetched), make a
# `gpu` preset workspace on the offline corpus (this Python's standard library), prepare it, check
# that a command in the evaluators' sandbox sees the same GPU (and torch.compile on CUDA works there),
# run the untouched baseline for the budget (`prepare.py train`, then `prepare.py eval`: the
# harness's own two commands), and print steps, tokens/s, MFU, peak memory, val_bpb, and the start-up, evaluation and total times
# against their allowances. Exits 1 if the run failed or a time was over its allowance.
#
# The wheel folder (every dependency the machine lacks, torch excluded; about 11 MB) is made on a
# machine with PyPI access; docs/nanochat_bpb.md ("First GPU contact") gives the commands.
set -euo pipefail

python=python3 wheels="" install=1 tiny=0 budget=300
while (($#)); do
    case "$1" in
        --wheels) wheels=$2; shift ;;
        --no-install) install=0 ;;
        --python) python=$2; shift ;;
        --tiny) tiny=1 budget=4 ;;
        --budget) budget=$2; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
export AUTORESEARCH_CACHE=$work/cache GIT_AUTHOR_NAME=gpu_check GIT_AUTHOR_EMAIL=gpu_check@localhost
export GIT_COMMITTER_NAME=gpu_check GIT_COMMITTER_EMAIL=gpu_check@localhost PYTHONUNBUFFERED=1
started=$(date +%s)

if ((install)); then
    [[ -d $wheels ]] || { echo "gpu_check.sh: --wheels DIR is needed (or --no-install)" >&2; exit 2; }
    echo "== install from $wheels (offline)"
    "$python" -m pip install -q --no-index --find-links "$wheels" --no-build-isolation "$repo"
fi
"$python" - <<'EOF'
import torch
cuda = torch.cuda.is_available()
print(f"== torch {torch.__version__}, device: {torch.cuda.get_device_name(0) if cuda else 'cpu'}")
EOF

if ((tiny)); then  # the CPU preset, shrunk to seconds: same code paths but CUDA's
    options=(--preset cpu -o device=cpu -o MAX_SEQ_LEN=64 -o VOCAB_SIZE=512 -o EVAL_TOKENS=2048
             -o EVAL_BATCH_SIZE=8 -o DEPTH=2 -o ASPECT_RATIO=32 -o HEAD_DIM=32 -o TOTAL_BATCH_SIZE=256
             -o DEVICE_BATCH_SIZE=4)
else
    options=(--preset gpu -o device=cuda)
fi
ws=$work/ws
echo "== workspace $ws"
"$python" -c 'from autoresearch.cli import cli; cli()' init nanochat_bpb "$ws" -o corpus=stdlib "${options[@]}"
cd "$ws"
prepare_started=$(date +%s)
"$python" prepare.py
prepared=$(date +%s)
echo "== sandbox: the evaluators' sandbox sees the device (and torch.compile on CUDA works in it)"
"$python" - "$work" <<'SANDBOX'
import subprocess, sys
from pathlib import Path
from autoresearch.measure import Evaluation, Runner
from autoresearch.sandbox import bwrap_problem, gpu_devices
if bwrap_problem():
    sys.exit(f"FAILED: no sandbox here: {bwrap_problem()}")
probe = """import torch
cuda = torch.cuda.is_available()
x = torch.ones(256, 256, device="cuda" if cuda else "cpu")
y = torch.compile(lambda t: (t @ t).relu().sum())(x) if cuda else (x @ x).sum()
print("probe", cuda, torch.cuda.device_count(), float(y))"""
outside = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
root, scratch = Path(sys.argv[1]) / "sandbox-root", Path(sys.argv[1]) / "sandbox-scratch"
root.mkdir(), scratch.mkdir()
log = Path(sys.argv[1]) / "sandbox.log"
evaluation = Evaluation(root=root, scratch=scratch, budget=300, seed=None, log_path=log, runner=Runner())
inside = evaluation.run([sys.executable, "-c", probe], deadline=300)
found = [line for line in inside.output().splitlines() if line.startswith("probe ")]
print(f"gpu devices passed    {' '.join(gpu_devices()) or 'none'}")
print(f"outside the sandbox   {outside.stdout.strip()}")
print(f"inside the sandbox    {found[-1] if found else inside.reason}")
if inside.status != "ok" or found[-1:] != [outside.stdout.strip()]:
    sys.exit(f"FAILED: the sandbox does not see what the machine has; log: {log}")
SANDBOX
echo "== baseline: ${budget}s of training"
run_started=$(date +%s)
"$python" prepare.py train --budget "$budget" --run-dir "$work/run"
"$python" - "$work/run/train_report.json" <<'CHECK'
import json, sys
report = json.load(open(sys.argv[1]))
sys.exit(0 if report["status"] == "ok" else f"FAILED ({report['status']}): {report['reason']}")
CHECK
"$python" prepare.py eval --run-dir "$work/run" --started "$run_started"
ended=$(date +%s)

"$python" - "$work/run/result.json" "$((prepared - prepare_started))" "$((ended - started))" <<'EOF'
import json, sys
from autoresearch.plugins.nanochat_bpb import read_constants, PRESETS
result, prepare_seconds, total = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
if result["status"] != "ok":
    sys.exit(f"FAILED ({result['status']}): {result['reason']}")
preset = PRESETS[read_constants(open("prepare.py").read())["PRESET"]]
def line(name, value, allowance=None):
    verdict = "" if allowance is None else f"  (allowance {allowance:g}: {'ok' if value <= allowance else 'OVER'})"
    print(f"{name:<22}{value}{verdict}")
    return allowance is None or value <= allowance
print("== gpu_check")
line("steps", result["num_steps"])
line("tokens_per_second", round(result["total_tokens_M"] * 1e6 / result["training_seconds"]))
line("mfu_percent", result.get("mfu_percent", "n/a (no known peak)"))
line("peak_vram_mb", round(result.get("peak_vram_mb", 0.0), 1))
line("peak_rss_mb", round(result["peak_rss_mb"], 1))
line("val_bpb", round(result["val_bpb"], 6))
line("training_seconds", round(result["training_seconds"], 1))
ok = all([
    line("startup_seconds", round(result["startup_seconds"], 1), preset["startup_seconds"]),
    line("eval_seconds", round(result["eval_seconds"], 1), preset["eval_seconds"]),
    line("prepare_seconds", prepare_seconds),
    line("total_seconds", total, 480),
])
sys.exit(0 if ok else 1)
EOF
