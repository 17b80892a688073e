#!/usr/bin/env bash
# Sets up .venv if needed, checks the import layers (.importlinter), builds the docs site with
# broken links and pages as errors (mkdocs build --strict), then runs the whole test suite (real
# local Ray, tiny models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
lint-imports --no-logo --no-cache
# Not --quiet: under it mkdocs drops warnings before --strict counts them, so a broken link would pass.
NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true mkdocs build --strict --site-dir "$(mktemp -d)"
exec python -m pytest -q "$@"
