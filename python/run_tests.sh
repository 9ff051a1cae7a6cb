#!/usr/bin/env bash
# Runs the seppoc_torch tests (python/tests, pytest) offline on CPU with the given interpreter:
#   python/run_tests.sh PYTHON [pytest args...]      e.g. python/run_tests.sh target/torch-venv/bin/python -q
# PYTHON needs the packages python/pyproject.toml lists (with the diffusers extra) and pytest; the package is
# imported from the source tree (PYTHONPATH), not installed.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 PYTHON [pytest args...]" >&2
  exit 2
fi
PY="$1"
shift
cd "$(dirname "$0")"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}"
exec "$PY" -m pytest tests "$@"
