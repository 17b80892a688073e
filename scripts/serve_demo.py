"""The end of the quick start: a few real test reviews through the deployed HTTP endpoint."""

from __future__ import annotations

import pyarrow.parquet as pq

from serving.client import Client

rows = pq.read_table("data/drug_reviews/test.parquet").slice(0, 4).to_pylist()
with Client("http://127.0.0.1:8000") as client:
    answer = client.predict("drug-reviews", [r["review"] for r in rows])
print(f"drug-reviews@{answer['version']} over HTTP:")
for row, prediction in zip(rows, answer["predictions"]):
    p = prediction["probabilities"][prediction["label"]]
    print(f"  predicted {prediction['label']!r} (p={p:.2f}), true {row['condition']!r}: {row['review'][:70]!r}...")
