#!/usr/bin/env bash
# A whole SePPO training step, seppoc against the same step written plainly in PyTorch (the seppoc_torch package,
# python/, following the emitted module's PLAN): reference choice, reference sampling (DDIM 10 steps with guidance), the
# frozen reference pass, the taped policy pass, the gate, the loss, backward and AdamW, on the same DiT weights
# (assets/base), the same preference data and the same batch size, on CPU.
# Usage: bench/seppo_step.sh [batch]   (PYTHON: a python with torch, safetensors, accelerate, pyarrow, pillow and tqdm, default python3; STEPS per
# run, default 12; ROUNDS of interleaved seppoc/PyTorch runs, default 3). seppoc and eager PyTorch report the mean
# wall time of their steps (first step included). The third side, PyTorch with the network under `torch.compile`
# (inductor) and the fused AdamW (`seppoc-torch train --compile`; COMPILE=0 leaves it out), reports the mean of its
# steps after WARMUP (default 3) warm-up steps, which compile (a second batch size recompiles with a dynamic batch
# axis) and whose wall time is printed separately. It starts with the CPU model, its vector extensions, the GEMM
# kernel seppoc selected (SEPPOC_GEMM_KERNEL=avx2 forces the AVX2 one) and the load; the last two lines are the
# ratios of the medians over rounds to eager and to compiled PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH="${1:-16}"
STEPS="${STEPS:-12}"
ROUNDS="${ROUNDS:-3}"
COMPILE="${COMPILE:-1}"
WARMUP="${WARMUP:-3}"
if [ "$COMPILE" = 1 ] && [ "$STEPS" -le "$WARMUP" ]; then
  echo "bench/seppo_step.sh: STEPS ($STEPS) must exceed WARMUP ($WARMUP) to time compiled steps" >&2
  exit 2
fi
PYTHON="${PYTHON:-python3}"
OUT="target/bench/seppo-step-$BATCH"
mkdir -p "$OUT"
cargo build --release --bin seppoc >/dev/null
SEPPOC=./target/release/seppoc
$SEPPOC emit --target torch objectives/seppo.obj -o "$OUT/seppo_loss.py" >/dev/null
[ -f "$OUT/export/data.safetensors" ] || $SEPPOC export-torch objectives/seppo.obj --out "$OUT/export" >/dev/null
. bench/common.sh
describe_machine "$SEPPOC"
echo "torch: $("$PYTHON" -c 'import torch; print(torch.__version__)'), 2 threads"
wait_for_idle
: > "$OUT/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$OUT/run"
  ms=$($SEPPOC run objectives/seppo.obj --steps "$STEPS" --batch "$BATCH" --eval-prompts 0 --checkpoint-every 0 \
        --profile --out "$OUT/run" | sed -n 's/^time per training step, mean of [0-9]* steps: \([0-9.]*\) ms$/\1/p')
  echo "seppoc $ms" | tee -a "$OUT/rounds.txt"
  tms=$(PYTHONPATH=python "$PYTHON" -m seppoc_torch train --objective "$OUT/seppo_loss.py" \
        --model assets/base/model.safetensors --data "$OUT/export/data.safetensors" \
        --steps "$STEPS" --batch "$BATCH" --threads 2 --cpu --json --time \
        | "$PYTHON" -c 'import json, sys; v = [json.loads(l)["step_ms"] for l in sys.stdin if l.startswith("{")]; print(f"{sum(v) / len(v):.1f}")')
  echo "torch $tms" | tee -a "$OUT/rounds.txt"
  if [ "$COMPILE" = 1 ]; then
    cms=$(PYTHONPATH=python "$PYTHON" -m seppoc_torch train --objective "$OUT/seppo_loss.py" \
          --model assets/base/model.safetensors --data "$OUT/export/data.safetensors" \
          --steps "$STEPS" --batch "$BATCH" --threads 2 --cpu --json --time --compile \
          | "$PYTHON" -c 'import json, sys
w = int(sys.argv[1]); v = [json.loads(l)["step_ms"] for l in sys.stdin if l.startswith("{")]
print(f"{sum(v[w:]) / len(v[w:]):.1f} {sum(v[:w]) / 1e3:.1f}")' "$WARMUP")
    echo "torch-compile ${cms% *} warmup_s ${cms#* }" | tee -a "$OUT/rounds.txt"
  fi
done
s=$(awk '$1 == "seppoc" {print $2}' "$OUT/rounds.txt" | median)
t=$(awk '$1 == "torch" {print $2}' "$OUT/rounds.txt" | median)
echo "seppoc's own split of its last run (ms per step, from --profile):"
"$PYTHON" -c 'import json, sys
for x in json.load(open(sys.argv[1]))["phases"]: print("  %-28s %8.2f" % (x["phase"], x["ms_per_step"]))' "$OUT/run/profile.json"
echo "load average (1 min) after: $(cut -d' ' -f1 /proc/loadavg)"
echo "medians over $ROUNDS rounds, batch $BATCH, $STEPS steps: seppoc $s ms, torch $t ms"
if [ "$COMPILE" = 1 ]; then
  c=$(awk '$1 == "torch-compile" {print $2}' "$OUT/rounds.txt" | median)
  cw=$(awk '$1 == "torch-compile" {print $4}' "$OUT/rounds.txt" | median)
  echo "torch.compile + fused AdamW: $c ms per step after $WARMUP warm-up steps (their wall time, compilation included: $cw s)"
fi
echo "ratio seppoc/torch seppo step: $(awk -v a="$s" -v b="$t" 'BEGIN{printf "%.2f", a/b}')x"
if [ "$COMPILE" = 1 ]; then
  echo "ratio seppoc/torch.compile seppo step: $(awk -v a="$s" -v b="$c" 'BEGIN{printf "%.2f", a/b}')x"
fi
