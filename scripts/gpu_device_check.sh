#!/usr/bin/env bash
# The GPU checks in one command, for a lent GPU machine (the device tool, carry [".gpu"]; build
# .gpu/site.zip here first with scripts/gpu_bundle.sh). Steps, each logged under $OUT:
#   1. nvidia-smi, and the imports the checks need (stops here if one fails: nothing else would run);
#   2. tests/test_gpu.py (a use_gpu run on CUDA with NCCL, a bf16 Predictor on CUDA);
#   3. bench/gpu_check.py (MFU and tokens/s, Ray Train on the GPU, a GPU Serve replica).
# About 6-8 minutes on one H100, most of it Ray and Serve starting; give the run timeout_s 540.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/biomed-gpu-out}
site=/tmp/biomed-site
mkdir -p "$out"
python3 -m zipfile -e .gpu/site.zip "$site"
# zipfile drops file modes; Ray starts its raylet and GCS server from these binaries.
chmod -R a+x "$site/ray/core"
export PYTHONPATH="$site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 - > "$out/imports.log" 2>&1 <<'EOF' || { cat "$out/imports.log"; exit 1; }
import sys, ray, ray.train.torch, ray.serve, pydantic, fastapi, torch, transformers
import jobs.train, jobs.cli, serving.deploy, biomed.checkpoint
print(f"python {sys.version.split()[0]}, ray {ray.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, pydantic {pydantic.__version__}, cuda {torch.cuda.is_available()}")
EOF
cat "$out/imports.log"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/test_gpu.log" | tail -15
timeout 360 python3 bench/gpu_check.py 2>&1 | tee "$out/gpu_check.log" | tail -25
