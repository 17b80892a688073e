"""Bounded load from its own process: N concurrent clients for a fixed time, each sending one
request at a time. Prints one JSON object: requests/s (answered 200), p50/p99 latency (ms), and
counts per status code or transport error.

    python bench/serve_load_client.py URL --concurrency 8 --seconds 6 [--token T]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import httpx
import numpy as np

TEXT = "I have taken this medicine for my migraines for three months and the headaches are much rarer."


async def client(http: httpx.AsyncClient, url: str, headers: dict, stop_at: float, warm_until: float, latencies: list, codes: Counter) -> None:
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            code = (await http.post(url, json={"inputs": [TEXT]}, headers=headers)).status_code
        except httpx.TransportError as error:  # counted, not fatal: a reset is a result too
            code = type(error).__name__
        if started >= warm_until:
            latencies.append(time.perf_counter() - started)
            codes[code] += 1


async def run(url: str, concurrency: int, seconds: float, warmup_s: float, token: str | None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: list[float] = []
    codes: Counter = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        start = time.perf_counter()
        warm_until, stop_at = start + warmup_s, start + warmup_s + seconds
        await asyncio.gather(*(client(http, url, headers, stop_at, warm_until, latencies, codes) for _ in range(concurrency)))
    ok = [lat for lat in latencies]
    return {
        "concurrency": concurrency,
        "requests_per_s": round(codes[200] / seconds, 1),
        "p50_ms": round(float(np.percentile(ok, 50)) * 1000, 2) if ok else None,
        "p99_ms": round(float(np.percentile(ok, 99)) * 1000, 2) if ok else None,
        "status_counts": {str(k): v for k, v in sorted(codes.items(), key=lambda kv: str(kv[0]))},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.concurrency, args.seconds, args.warmup_s, args.token))))


if __name__ == "__main__":
    main()
