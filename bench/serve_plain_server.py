"""The server a user would write instead of ours: uvicorn + FastAPI + the same model and the same
dynamic batching (max batch size, wait timeout), one process. Used by bench/serve_load.py.

    python bench/serve_plain_server.py MODEL_DIR --port 8100 [--max-batch-size 16] [--batch-wait-timeout-s 0.005] [--no-batching]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from biomed.checkpoint import Predictor  # noqa: E402
from biomed.families.sequence import SequencePredictRequest  # noqa: E402

app = FastAPI()
STATE: dict = {}


async def batcher(queue: asyncio.Queue, predictor: Predictor, max_batch_size: int, wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        items = [await queue.get()]
        deadline = loop.time() + wait_s
        while len(items) < max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        texts = [t for texts, _ in items for t in texts]
        probs = await asyncio.to_thread(predictor.predict, texts)
        start = 0
        for texts, future in items:
            future.set_result(probs[start : start + len(texts)])
            start += len(texts)


@app.on_event("startup")
async def start_batcher() -> None:
    if STATE["batching"]:
        STATE["queue"] = asyncio.Queue()
        STATE["task"] = asyncio.create_task(batcher(STATE["queue"], STATE["predictor"], STATE["max_batch_size"], STATE["wait_s"]))


@app.post("/predict")
async def predict(request: Request) -> dict:
    body = SequencePredictRequest.model_validate_json(await request.body())
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    predictor: Predictor = STATE["predictor"]
    if STATE["batching"]:
        future = asyncio.get_running_loop().create_future()
        await STATE["queue"].put((texts, future))
        probs = await future
    else:
        probs = await asyncio.to_thread(predictor.predict, texts)
    labels = predictor.labels
    return {"predictions": [{"label": labels[int(p.argmax())], "probabilities": dict(zip(labels, map(float, p)))} for p in probs]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.005)
    parser.add_argument("--no-batching", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    STATE.update(predictor=Predictor(directory=args.model_dir, batch_size=args.max_batch_size * 4), batching=not args.no_batching,
                 max_batch_size=args.max_batch_size, wait_s=args.batch_wait_timeout_s)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
