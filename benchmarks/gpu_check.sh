#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): ≤ 8 minutes on one H200, nothing fetched.
# The machine needs torch (CUDA), transformers, accelerate and peft; the small wheels skillmerge adds
# (pydantic, typer, rich, gguf, ...) are installed from wheels/ beside this repository when present
# (pip download them on a connected machine), and skillmerge itself without dependencies.
#   bash benchmarks/gpu_check.sh        → $OUT/gpu_check.json (or benchmarks/results/gpu_check.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d wheels ]; then
  "$PY" -m pip install -q --no-index --find-links wheels pydantic typer rich gguf pyyaml safetensors 2>&1 | tail -2 || true
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2 || export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
