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
