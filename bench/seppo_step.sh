#!/usr/bin/env bash
# A whole SePPO training step, seppoc against the same step written plainly in PyTorch (the seppoc_torch package,
# python/, following the emitted module's PLAN): reference choice, reference sampling (DDIM 10 steps with guidance), the
# frozen reference pass, the taped policy pass, the gate, the loss, backward and AdamW, on the same DiT weights
# (assets/base), the same preference data and the same batch size, on CPU.
# Usage: bench/seppo_step.sh [batch]   (PYTHON: a python with torch, safetensors, accelerate, pyarrow, pillow and tqdm, default python3; STEPS per
# run, default 12; ROUNDS of interleaved seppoc/PyTorch runs, default 3). Both sides report the mean wall time of
# their steps (first step included); the last line is the ratio of the medians over rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH="${1:-16}"
STEPS="${STEPS:-12}"
ROUNDS="${ROUNDS:-3}"
PYTHON="${PYTHON:-python3}"
OUT="target/bench/seppo-step-$BATCH"
mkdir -p "$OUT"
cargo build --release --bin seppoc >/dev/null
SEPPOC=./target/release/seppoc
$SEPPOC emit --target torch objectives/seppo.obj -o "$OUT/seppo_loss.py" >/dev/null
[ -f "$OUT/export/data.safetensors" ] || $SEPPOC export-torch objectives/seppo.obj --out "$OUT/export" >/dev/null
. bench/common.sh
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
done
s=$(awk '$1 == "seppoc" {print $2}' "$OUT/rounds.txt" | median)
t=$(awk '$1 == "torch" {print $2}' "$OUT/rounds.txt" | median)
echo "seppoc's own split of its last run (ms per step, from --profile):"
"$PYTHON" -c 'import json, sys
for x in json.load(open(sys.argv[1]))["phases"]: print("  %-28s %8.2f" % (x["phase"], x["ms_per_step"]))' "$OUT/run/profile.json"
echo "load average (1 min) after: $(cut -d' ' -f1 /proc/loadavg)"
echo "medians over $ROUNDS rounds, batch $BATCH, $STEPS steps: seppoc $s ms, torch $t ms"
echo "ratio seppoc/torch seppo step: $(awk -v a="$s" -v b="$t" 'BEGIN{printf "%.2f", a/b}')x"
