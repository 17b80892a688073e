"""Does explain traffic starve predict? Predict throughput at concurrency 8 on one replica,
alone and with explain requests running beside it.

A tiny text BERT (registered like a trained one, as bench/serve_load.py does) on one Serve
replica with 1 CPU. Predict load: 8 concurrent clients from their own process
(bench/serve_load_client.py), one input per request. Explain load: 4 clients in this process
posting one-input explanations without pause; the replica runs `explain_max_concurrent` (1) at
a time and turns the rest away with 503 at once. The last line is one JSON object: predict
requests/s and p50 alone and beside explain, their ratio, and the explain answers by status.

    python bench/explain_load.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import save  # noqa: E402
from serve_load import TEXT, TOKEN, load, register_tiny_model  # noqa: E402

from cluster.local_head import free_port  # noqa: E402


def explain_traffic(url: str, stop: threading.Event, codes: Counter, clients: int = 4) -> list[threading.Thread]:
    import httpx

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                response = http.post(url, json={"inputs": [TEXT]}, headers={"Authorization": f"Bearer {TOKEN}"})
                codes[response.status_code] += 1
                if response.status_code == 503:
                    time.sleep(float(response.headers.get("retry-after", "1")))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    os.environ["BIOMED_SERVE_TOKEN"] = TOKEN
    from cluster.connect import connect
    from serving.deploy import deploy

    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        register_tiny_model(storage)
        connect(num_cpus=2)
        port = free_port()
        deploy(["bench"], storage_path=storage, overrides={"port": port, "min_replicas": 1, "max_replicas": 1, "num_cpus_per_replica": 1})
        base = f"http://127.0.0.1:{port}/bench"
        load(f"{base}/predict", 4, 1.0, TOKEN)  # warm up
        alone = load(f"{base}/predict", 8, args.seconds, TOKEN)
        stop, codes = threading.Event(), Counter()
        threads = explain_traffic(f"{base}/explain", stop, codes)
        time.sleep(1.0)
        beside = load(f"{base}/predict", 8, args.seconds, TOKEN)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        from ray import serve

        serve.shutdown()
    figures = {
        "predict_alone": alone, "predict_beside_explain": beside,
        "throughput_ratio_beside_over_alone": round(beside["requests_per_s"] / alone["requests_per_s"], 3) if alone["requests_per_s"] else None,
        "explain_status_counts": {str(k): v for k, v in sorted(codes.items())},
    }
    print(f"predict alone: {alone['requests_per_s']} req/s, p50 {alone['p50_ms']} ms; beside explain: {beside['requests_per_s']} req/s, p50 {beside['p50_ms']} ms")
    save("explain_load", figures, command="python bench/explain_load.py " + " ".join(sys.argv[1:]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
