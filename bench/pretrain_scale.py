"""Pretraining at scale, in one run: the service against a plain PyTorch loop, and a worker's
memory and time to its first step as the corpus grows tenfold.

The corpus is MOSES (`biomed data moses --rows`): N and 10N SMILES. Each service run is
`jobs.pretrain.pretrain` on an embedded local Ray with one worker of one CPU (one torch thread),
small-bert, batches of 64, for a fixed number of steps; the worker reports its own throughput
(non-padding tokens/s, training only), peak RSS and time to its first optimizer step. The plain
loop is the same model, tokenizer, batch size, length-grouped order and masking (Hugging Face's
collator) over rows already tokenized in memory, with no Ray, no streaming and no checkpoints.
Both runs validate on the same held-out set, so only the training corpus grows. Figures:

- `throughput_ratio`: the service's tokens/s over the plain loop's, at N (goal: near 1);
- `rss_ratio_10x`: the worker's peak RSS at 10N over N (goal <= 1.2);
- `first_step_s`: seconds from the worker's start to its first step, at N and 10N; and the
  driver's pass over the corpus (checks, tokenizer), which is the one cost that grows with it.

    python bench/pretrain_scale.py [--rows 50000] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import save  # noqa: E402
BATCH, MAX_LENGTH = 64, 96


def spec_dict(corpus: Path, validation: Path, storage: Path, *, name: str, steps: int) -> dict:
    return {
        "name": name, "family": "smiles",
        "corpus": {"train_path": str(corpus / "train" / "*.parquet"), "validation_path": str(validation / "*.parquet"), "column": "smiles"},
        "model": {"preset": "small-bert"},
        "training": {"epochs": 1, "max_steps": steps, "batch_size_per_worker": BATCH, "max_seq_length": MAX_LENGTH, "eval_batch_size": 256},
        "scaling": {"num_workers": 1, "cpus_per_worker": 1},
        "storage_path": str(storage),
    }


def plain_loop(corpus: Path, tokenizer_dir: str, *, steps: int) -> dict:
    """The same model and masking over in-memory token ids: tokens/s of training steps only."""
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from biomed.batching import epoch_batches
    from biomed.families import get_family
    from biomed.families.sequence.backbones import SMALL_BERT, build_masked_lm

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    smiles = pq.read_table(sorted((corpus / "train").glob("*.parquet"))[0], columns=["smiles"]).column(0).to_pylist()[: BATCH * steps]
    smiles = get_family("smiles").make_check().validate(smiles)  # canonical, as the service trains on
    ids = tokenizer(smiles, truncation=True, max_length=MAX_LENGTH)["input_ids"]
    # Length-grouped batches, as the service draws them (its default), so the ratio is the
    # service's own cost, not the grouping's gain.
    order = np.concatenate(epoch_batches(len(ids), epoch=0, seed=0, rank=0, world=1, batch_size=BATCH, lengths=np.array([len(x) for x in ids])))
    ids = [ids[i] for i in order]
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    model = build_masked_lm(SMALL_BERT, vocab_size=len(tokenizer), max_positions=512).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    tokens, elapsed = 0, 0.0
    for step in range(steps):
        batch = collator([{"input_ids": x} for x in ids[step * BATCH : (step + 1) * BATCH]])
        started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed += time.perf_counter() - started
        tokens += int(batch["attention_mask"].sum())
    return {"tokens_per_s": tokens / elapsed, "steps": steps}


def service_run(corpus: Path, validation: Path, storage: Path, *, name: str, steps: int) -> dict:
    from jobs.pretrain import pretrain
    from jobs.pretrain_spec import parse_pretrain_spec

    summary = pretrain(parse_pretrain_spec(spec_dict(corpus, validation, storage, name=name, steps=steps)))
    report = summary["last_report"]
    return {
        "tokens_per_s": report["train_tokens_per_s"], "peak_rss_mb": report["peak_rss_mb"], "first_step_s": report["first_step_seconds"],
        "setup_s": report["setup_seconds"], "driver_corpus_pass_s": summary["timing_s"]["corpus_pass"], "rows": summary["corpus"]["train"]["rows"],
        "tokenizer_dir": str(Path(summary["run_path"]) / "tokenizer"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="N: corpus rows of the small run (the large one has 10N)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    args = parser.parse_args()
    import ray

    from biomed.datasets import build_moses
    from biomed.log import configure
    from cluster.connect import connect

    configure("quiet")
    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as tmp:
        tmp = Path(tmp)
        for rows in (args.rows, 10 * args.rows):
            build_moses(tmp / f"moses-{rows}", rows=rows)
        connect(num_cpus=2)  # an embedded local Ray, set up as `biomed pretrain` does
        try:
            # Both runs validate on the same held-out set (the small corpus's): only the training corpus grows.
            validation = tmp / f"moses-{args.rows}" / "validation"
            small = service_run(tmp / f"moses-{args.rows}", validation, tmp / "runs", name="bench-n", steps=args.steps)
            large = service_run(tmp / f"moses-{10 * args.rows}", validation, tmp / "runs", name="bench-10n", steps=args.steps)
        finally:
            ray.shutdown()
        plain = plain_loop(tmp / f"moses-{args.rows}", small["tokenizer_dir"], steps=args.steps)
    result = {
        "throughput_ratio": round(small["tokens_per_s"] / plain["tokens_per_s"], 3),
        "rss_ratio_10x": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "first_step_ratio_10x": round(large["first_step_s"] / small["first_step_s"], 3),
        "service_tokens_per_s": round(small["tokens_per_s"], 1), "plain_tokens_per_s": round(plain["tokens_per_s"], 1),
        "peak_rss_mb": {"n": round(small["peak_rss_mb"], 1), "10n": round(large["peak_rss_mb"], 1)},
        "first_step_s": {"n": round(small["first_step_s"], 2), "10n": round(large["first_step_s"], 2)},
        "driver_corpus_pass_s": {"n": round(small["driver_corpus_pass_s"], 2), "10n": round(large["driver_corpus_pass_s"], 2)},
        "rows": {"n": small["rows"], "10n": large["rows"]}, "steps": args.steps, "batch": BATCH,
    }
    print(f"service {result['service_tokens_per_s']} vs plain {result['plain_tokens_per_s']} tokens/s; RSS {result['peak_rss_mb']} MB; first step {result['first_step_s']} s")
    save("pretrain_scale", result, command=" ".join(["python", *sys.argv]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
