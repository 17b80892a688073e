"""Online inference under bounded load: our Serve endpoint vs a plain uvicorn + FastAPI server.

Same tiny BERT (registered like a trained one, golden probe included), load from a separate
process at concurrency 1, 8 and 32, one request = one input. Rows:
  (a) raw model forward in one process, no HTTP (the floor; concurrency 1 only)
  (b) plain uvicorn + FastAPI, same model, same batching (max batch 16, 5 ms wait), and without
  (c) our endpoint with batching, one replica   (d) our endpoint without batching
  each of (c) and (d) twice: through Serve's HTTP proxy, and at the replica's own port (direct
  ingress, what `replica_urls` lists), which skips the proxy hop
Then replicas scaling up under load and back down after, with the seconds each took.
The last line is one JSON object with every figure.

    python bench/serve_load.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import save  # noqa: E402

from biomed.checkpoint import Predictor, save_model_checkpoint  # noqa: E402
from biomed.families.sequence.backbones import build_bert_classifier  # noqa: E402
from biomed.families.sequence.tokens import SequenceEncoder, TokenEncoder  # noqa: E402
from biomed.families.text import BACKBONES  # noqa: E402
from cluster.local_head import free_port  # noqa: E402
from jobs.registry import Registry  # noqa: E402

TEXT = "I have taken this medicine for my migraines for three months and the headaches are much rarer."
LABELS = ["migraine", "insomnia", "acne"]
TOKEN = "bench-token"
CONCURRENCY = (1, 8, 32)


def register_tiny_model(storage: Path) -> Path:
    import torch

    tiny = BACKBONES["tiny-bert"]  # the text family's: MiniLM's WordPiece tokenizer
    encoder = TokenEncoder(SequenceEncoder("text", tiny.tokenizer()))
    torch.manual_seed(0)
    model = build_bert_classifier(tiny, path=None, labels=LABELS, num_outputs=len(LABELS), dropout=None, vocab_size=encoder.vocab_size).eval()
    staging = storage / "staging"
    metadata = {"task": "text_classification", "labels": LABELS, "max_seq_length": 64, "validator": {"kind": "text"}}
    save_model_checkpoint(model, encoder, staging, metadata)
    record = {"task": "text_classification", "labels": LABELS, "probe": Predictor(directory=staging).probe(TEXT)}
    entry = Registry(root=storage / "registry").register(name="bench", model_dir=staging, record=record, selection={"metric": "val_loss", "mode": "min", "value": 1.0})
    return Path(entry["path"])


def raw_floor(model_dir: Path, seconds: float) -> dict:
    import torch

    torch.set_num_threads(1)
    predictor = Predictor(directory=model_dir)
    for _ in range(20):
        predictor.predict([TEXT])
    latencies = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        started = time.perf_counter()
        predictor.predict([TEXT])
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    return {"concurrency": 1, "requests_per_s": round(len(latencies) / seconds, 1), "p50_ms": round(statistics.median(latencies) * 1000, 2), "p99_ms": round(latencies[int(0.99 * len(latencies))] * 1000, 2)}


def load(url: str, concurrency: int, seconds: float, token: str | None = None) -> dict:
    command = [sys.executable, str(ROOT / "bench" / "serve_load_client.py"), url, "--concurrency", str(concurrency), "--seconds", str(seconds)]
    if token:
        command += ["--token", token]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for_port(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def plain_server(model_dir: Path, seconds: float, *, batching: bool = True) -> list[dict]:
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "serve_plain_server.py"), str(model_dir), "--port", str(port)]
    server = subprocess.Popen(command + ([] if batching else ["--no-batching"]), stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        load(f"http://127.0.0.1:{port}/predict", 4, 1.0)  # warm up
        return [load(f"http://127.0.0.1:{port}/predict", c, seconds) for c in CONCURRENCY]
    finally:
        server.terminate()
        server.wait(timeout=30)


def running_replicas() -> int:
    from ray import serve

    app = serve.status().applications.get("biomed")
    return sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values()) if app else 0


def ours(storage: Path, settings: dict, seconds: float) -> tuple[list[dict], list[dict]]:
    """(through the proxy, at the replica's own port)"""
    from serving.deploy import deploy

    summary = deploy(["bench"], storage_path=storage, overrides=settings)
    out = []
    for base in (f"http://127.0.0.1:{settings['port']}", summary["replica_urls"][0]):
        url = f"{base}/bench/predict"
        load(url, 4, 1.0, TOKEN)
        out.append([load(url, c, seconds, TOKEN) for c in CONCURRENCY])
    return out[0], out[1]


def autoscaling(storage: Path, settings: dict) -> dict:
    from serving.deploy import deploy

    scaled = {**settings, "min_replicas": 1, "max_replicas": 2, "num_cpus_per_replica": 0.5, "target_ongoing_requests": 2, "upscale_delay_s": 1.0, "downscale_delay_s": 3.0}
    deploy(["bench"], storage_path=storage, overrides=scaled)
    url = f"http://127.0.0.1:{settings['port']}/bench/predict"
    timeline: list[tuple[float, int]] = []
    started = time.monotonic()
    loader = threading.Thread(target=load, args=(url, 16, 30.0, TOKEN))
    loader.start()
    while loader.is_alive():
        timeline.append((time.monotonic() - started, running_replicas()))
        time.sleep(0.5)
    load_end = time.monotonic() - started
    while time.monotonic() - started < load_end + 60 and running_replicas() > 1:
        timeline.append((time.monotonic() - started, running_replicas()))
        time.sleep(0.5)
    timeline.append((time.monotonic() - started, running_replicas()))
    up = next((t for t, n in timeline if n >= 2), None)
    down = next((t for t, n in timeline if t > load_end and n == 1), None)
    return {
        "max_replicas_seen": max(n for _, n in timeline),
        "seconds_to_2_replicas_under_load": round(up, 1) if up is not None else None,
        "seconds_back_to_1_after_load": round(down - load_end, 1) if down is not None else None,
    }


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    os.environ["BIOMED_SERVE_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        model_dir = register_tiny_model(storage)
        floor = raw_floor(model_dir, 3.0)
        plain = plain_server(model_dir, args.seconds)
        plain_unbatched = plain_server(model_dir, args.seconds, batching=False)

        from cluster.connect import connect

        connect(num_cpus=2)
        settings = {"port": free_port(), "min_replicas": 1, "max_replicas": 1, "num_cpus_per_replica": 1, "max_batch_size": 16, "batch_wait_timeout_s": 0.005}
        batched, direct = ours(storage, {**settings, "batching": True}, args.seconds)
        unbatched, direct_unbatched = ours(storage, {**settings, "batching": False}, args.seconds)
        scaling = autoscaling(storage, settings)
        from ray import serve

        serve.shutdown()

    rows = {
        "raw_forward": [floor], "plain_fastapi_batched": plain, "plain_fastapi_unbatched": plain_unbatched,
        "ours_batched": batched, "ours_unbatched": unbatched, "ours_direct_batched": direct, "ours_direct_unbatched": direct_unbatched,
    }
    print(f"{'server':24} " + " ".join(f"{'c=' + str(c):>22}" for c in CONCURRENCY))
    for name, results in rows.items():
        print(f"{name:24} " + " ".join(f"{r['requests_per_s']:7.1f} req/s p50 {r['p50_ms']:6.1f} ms" for r in results))
    by_c = {c: (p, b) for c, p, b in zip(CONCURRENCY, plain, batched)}
    direct_by_c = {c: (p, d) for c, p, d in zip(CONCURRENCY, plain, direct)}
    figures = {
        "rows": rows,
        "ours_direct_batched_vs_plain_throughput_c32": ratio(direct_by_c[32][1]["requests_per_s"], direct_by_c[32][0]["requests_per_s"]),
        "ours_direct_batched_vs_plain_throughput": {c: ratio(d["requests_per_s"], p["requests_per_s"]) for c, (p, d) in direct_by_c.items()},
        "ours_direct_p50_minus_plain_p50_ms_c1": round(direct_by_c[1][1]["p50_ms"] - direct_by_c[1][0]["p50_ms"], 2),
        "ours_direct_unbatched_vs_plain_unbatched_throughput_c32": ratio(direct_unbatched[-1]["requests_per_s"], plain_unbatched[-1]["requests_per_s"]),
        "ours_direct_unbatched_p50_minus_plain_unbatched_p50_ms_c1": round(direct_unbatched[0]["p50_ms"] - plain_unbatched[0]["p50_ms"], 2),
        "ours_batched_vs_plain_throughput_c32": ratio(by_c[32][1]["requests_per_s"], by_c[32][0]["requests_per_s"]),
        "ours_batched_vs_plain_throughput": {c: ratio(b["requests_per_s"], p["requests_per_s"]) for c, (p, b) in by_c.items()},
        "ours_p50_minus_plain_p50_ms_c1": round(by_c[1][1]["p50_ms"] - by_c[1][0]["p50_ms"], 2),
        "ours_unbatched_vs_plain_unbatched_throughput_c32": ratio(unbatched[-1]["requests_per_s"], plain_unbatched[-1]["requests_per_s"]),
        "ours_unbatched_p50_minus_plain_unbatched_p50_ms_c1": round(unbatched[0]["p50_ms"] - plain_unbatched[0]["p50_ms"], 2),
        "autoscaling": scaling,
    }
    print(f"ours batched / plain at c=32: direct {figures['ours_direct_batched_vs_plain_throughput_c32']}, via the proxy {figures['ours_batched_vs_plain_throughput_c32']}")
    print(f"p50 at c=1, ours - plain: direct {figures['ours_direct_p50_minus_plain_p50_ms_c1']} ms, via the proxy {figures['ours_p50_minus_plain_p50_ms_c1']} ms")
    print(f"autoscaling: {scaling}")
    save("serve_load", figures, command=" ".join(["python", *sys.argv]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
