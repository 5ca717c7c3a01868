#!/usr/bin/env bash
# One short GPU check (see benchmarks/gpu_check.py): run from the repository root on a machine with
# a CUDA GPU and torch installed, e.g. through the device tool. 2.5 minutes on an H100 (results/gpu_check.csv).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import accelerate, safetensors" 2>/dev/null || python3 -m pip install -q accelerate safetensors
PYTHONPATH=. PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py "$@"
