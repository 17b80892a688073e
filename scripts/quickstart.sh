#!/usr/bin/env bash
# The main job end to end on an embedded local Ray (no cluster needed):
# packaged drug reviews → Parquet → validate → fine-tune all-MiniLM-L6-v2 on 2 Ray Train
# workers → a small ASHA search → register the best checkpoints → predict with the best →
# deploy the best on Ray Serve (a local Ray head on 127.0.0.1 that stays up) and query it over HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
biomed data drug-reviews --out data/drug_reviews > /dev/null
biomed validate configs/drug_reviews.yaml > /dev/null && echo "configs/drug_reviews.yaml: valid"
biomed train configs/drug_reviews.yaml
# --resume: continues an interrupted search, or starts it when there is none yet.
biomed tune configs/drug_reviews_tune.yaml --resume
biomed models list
biomed predict drug-reviews \
  --text "This pill made my acne clear up within weeks, my skin has never looked better." \
  --text "I could not sleep for months; now I fall asleep in twenty minutes and stay asleep."
biomed serve deploy drug-reviews
python scripts/serve_demo.py
cat <<EOF

The best drug-reviews checkpoint is served at http://127.0.0.1:8000 (API docs: /docs).
Query it:
  curl -H "Authorization: Bearer \$(cat ~/.biomed/serve_token)" -H 'Content-Type: application/json' \\
       -d '{"inputs": ["This helped my migraines within a week."]}' http://127.0.0.1:8000/drug-reviews/predict
Stop it (Serve and the local Ray head it runs on):
  .venv/bin/biomed serve shutdown
EOF
