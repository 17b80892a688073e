#!/usr/bin/env bash
# Sets up .venv if needed and runs the whole test suite (real local Ray, tiny models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
exec python -m pytest -q "$@"
