# Shared by bench/run.sh and bench/seppo_step.sh (sourced): waiting for an idle machine, recording its load, and
# the median of a column of numbers.

# Waits (up to IDLE_WAIT seconds, default 180) for the 1-minute load to fall to 0.5, so a benchmark run right after
# another (or after a build) does not start on the load the previous job left behind; then prints the load and a
# warning when it is still above 0.5 (numbers measured then are not to be recorded: PyTorch's threads lose far
# more to contention than rayon does, so a contended ratio flatters seppoc).
wait_for_idle() {
  for _ in $(seq 1 $(( ${IDLE_WAIT:-180} / 10 ))); do
    awk -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN{exit !(l > 0.5)}' || break
    sleep 10
  done
  local load
  load="$(cut -d' ' -f1 /proc/loadavg)"
  echo "load average (1 min) before the benchmark: $load"
  if awk -v l="$load" 'BEGIN{exit !(l > 0.5)}'; then
    echo "WARNING: load $load > 0.5 from other work: these numbers are contended; do not record them"
  fi
}

# The median of the numbers on standard input, one per line.
median() { sort -g | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

# Prints what the numbers were measured on: the CPU model, its vector extensions that matter here, and the
# matrix-product kernel the fused CPU layers selected (`seppoc --version` of the binary $1, after
# SEPPOC_GEMM_KERNEL, which forces one: say so when you report its numbers).
describe_machine() {
  local model flags
  model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)"
  flags="$(awk '/^flags/ {for (i = 2; i <= NF; i++) print $i; exit}' /proc/cpuinfo 2>/dev/null \
    | grep -xE 'avx2|fma|avx512f|avx512vl|avx512bw|avx512dq|avx512_bf16|avx512_vnni|amx_tile' | tr '\n' ' ')"
  echo "cpu: ${model:-unknown} ($(nproc) cores visible); vector extensions: ${flags:-none of avx2/fma/avx512}"
  if [ -x "${1:-}" ]; then
    "$1" --version | grep '^cpu gemm kernel' || echo "cpu gemm kernel: not reported by $1"
  fi
  if [ -n "${SEPPOC_GEMM_KERNEL:-}" ]; then echo "SEPPOC_GEMM_KERNEL=$SEPPOC_GEMM_KERNEL (forced)"; fi
}
