"""One short check to run on a GPU machine: training speed and MFU, a Ray Train run on the GPU,
and a GPU Serve replica under load. On a machine without CUDA it prints "no GPU" and exits 0.

Rows (GPU):
  (a) fine-tuning steps of all-MiniLM-L6-v2 (the packaged weights) and of a BERT-base built from
      its config, sequence length 128, SDPA attention: fp32 eager (the baseline), bf16 autocast,
      and bf16 + torch.compile. samples/s, tokens/s and MFU = FLOPs per token x tokens/s / peak
      bf16 FLOP/s, with FLOPs per token = 6 x non-embedding parameters + 12 x layers x hidden x
      sequence length (the forward and backward matmuls, attention scores included);
  (b) `biomed train` of a tiny spec with `scaling.use_gpu: true`: the workers' device and backend;
  (c) a GPU Serve replica of the MiniLM classifier at concurrency 32, fp32 then bf16: req/s, p50.
The last line is one JSON object with every figure.

    python bench/gpu_check.py [--steps 30] [--batch-size 64] [--peak-tflops 989]
    python bench/gpu_check.py --device cpu --steps 2 --batch-size 2   # the code path, on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import save  # noqa: E402

import torch  # noqa: E402

from biomed.devices import batch_to_device  # noqa: E402

# Dense bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s, by device-name substring.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0, "A6000": 155.0}
SEQ_LEN = 128


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((v for key, v in PEAK_BF16_TFLOPS.items() if key in name), None)


def minilm_weights() -> str:
    """'packaged' where the MiniLM package holds its weights; 'random' where only its config and
    tokenizer travelled (scripts/gpu_bundle.sh: the 81 MB of weights exceed what a call carries)."""
    from biomed.families.text import MINILM

    return "packaged" if (MINILM.path() / "model.safetensors").is_file() else "random"


def build_model(kind: str):
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig

    if kind == "minilm":
        from biomed.families.sequence.backbones import build_bert_classifier
        from biomed.families.text import MINILM

        if minilm_weights() == "packaged":
            return build_bert_classifier(MINILM, path=None, labels=["a", "b"], num_outputs=2, dropout=None)
        # The same architecture from its config: speed does not depend on the weights' values.
        config = AutoConfig.from_pretrained(MINILM.path(), num_labels=2, attn_implementation="sdpa")
        return AutoModelForSequenceClassification.from_config(config)
    config = BertConfig(num_labels=2, attn_implementation="sdpa")  # BERT-base: 12 layers, hidden 768
    return AutoModelForSequenceClassification.from_config(config)


def flops_per_token(model) -> float:
    config = model.config
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in model.parameters()) - embeddings
    return 6.0 * dense + 12.0 * config.num_hidden_layers * config.hidden_size * SEQ_LEN


def train_steps(kind: str, *, device: torch.device, precision: str, compiled: bool, steps: int, batch_size: int) -> dict:
    """Timed optimizer steps on random token ids (throughput only: the inputs carry no signal)."""
    torch.manual_seed(0)
    model = build_model(kind).to(device).train()
    per_token = flops_per_token(model)
    step_model = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    vocab = model.config.vocab_size
    batch = {"input_ids": torch.randint(1000, vocab, (batch_size, SEQ_LEN)), "attention_mask": torch.ones(batch_size, SEQ_LEN, dtype=torch.long), "labels": torch.randint(0, 2, (batch_size,))}
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            inputs = batch_to_device(batch, device)
            labels = inputs.pop("labels")
            loss = torch.nn.functional.cross_entropy(step_model(**inputs).logits.float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3 if compiled else 1):  # warm-up (compilation happens here)
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - started
    tokens_per_s = steps * batch_size * SEQ_LEN / seconds
    return {"model": kind, "precision": precision, "compiled": compiled, "samples_per_s": round(steps * batch_size / seconds, 1), "tokens_per_s": round(tokens_per_s), "flops_per_token": per_token}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_rows(device: torch.device, args, peak: float | None) -> list[dict]:
    rows = []
    settings = [("fp32", False), ("bf16", False)] + ([("bf16", True)] if device.type == "cuda" else [])
    for kind in args.models:
        for precision, compiled in settings:
            row = train_steps(kind, device=device, precision=precision, compiled=compiled, steps=args.steps, batch_size=args.batch_size)
            row["mfu"] = round(row["flops_per_token"] * row["tokens_per_s"] / (peak * 1e12), 3) if peak else None
            print(f"{kind:7} {precision} compile={compiled!s:5} {row['samples_per_s']:9.1f} samples/s {row['tokens_per_s']:10d} tokens/s  MFU {row['mfu']}")
            rows.append(row)
    return rows


def ray_train_on_gpu(storage: Path) -> dict:
    """`biomed train` of a tiny planted spec with use_gpu: true; the workers' device and backend."""
    from biomed.families.text.planted import write_planted_text
    from jobs.spec import parse_spec
    from jobs.train import train

    data = storage / "planted"
    data.mkdir()
    write_planted_text(data / "train.parquet", 480, seed=1)
    write_planted_text(data / "test.parquet", 150, seed=2)
    spec = {
        "name": "gpu-check", "task": {"name": "text_classification"}, "model": {"backbone": "tiny-bert"},
        "data": {"train_path": str(data / "train.parquet"), "test_path": str(data / "test.parquet")},
        "training": {"epochs": 2, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 40, "precision": "bf16"},
        "scaling": {"num_workers": 1, "use_gpu": True, "gpus_per_worker": 1}, "storage_path": str(storage / "runs"),
    }
    summary = train(parse_spec(spec))
    return {**summary["workers"], "test_accuracy": summary["test_metrics"].get("accuracy")}


def register_minilm(storage: Path) -> None:
    """The MiniLM classifier (head untrained) in a registry, with its fp32 CPU probe."""
    from biomed.checkpoint import Predictor, save_model_checkpoint
    from biomed.families.sequence.tokens import SequenceEncoder, TokenEncoder
    from biomed.families.text import MINILM
    from jobs.registry import Registry

    encoder = TokenEncoder(SequenceEncoder("text", MINILM.tokenizer()))
    staging = storage / "staging"
    save_model_checkpoint(build_model("minilm").eval(), encoder, staging, {"task": "text_classification", "labels": ["a", "b"], "max_seq_length": SEQ_LEN, "validator": {"kind": "text"}})
    record = {"task": "text_classification", "labels": ["a", "b"], "probe": Predictor(directory=staging).probe("a clinical note about chest pain")}
    Registry(root=storage / "registry").register(name="gpu-check", model_dir=staging, record=record, selection={"metric": "val_loss", "mode": "min", "value": 1.0})


def serve_rows(storage: Path, seconds: float) -> list[dict]:
    """A one-GPU replica at concurrency 32, fp32 then bf16 (bench/serve_load_client.py's load)."""
    import subprocess

    from ray import serve

    from cluster.local_head import free_port
    from serving.deploy import deploy

    register_minilm(storage)
    os.environ["BIOMED_SERVE_TOKEN"] = "gpu-check-token"
    rows = []
    for precision in ("fp32", "bf16"):
        port = free_port()
        deploy(["gpu-check"], storage_path=storage, overrides={"port": port, "min_replicas": 1, "max_replicas": 1, "num_cpus_per_replica": 1, "num_gpus_per_replica": 1, "precision": precision})
        url = f"http://127.0.0.1:{port}/gpu-check/predict"
        command = [sys.executable, str(ROOT / "bench" / "serve_load_client.py"), url, "--concurrency", "32", "--seconds", str(seconds), "--token", "gpu-check-token"]
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120)
        row = {"precision": precision, **json.loads(out.stdout.strip().splitlines()[-1])}
        print(f"serve {precision}: {row['requests_per_s']} req/s, p50 {row['p50_ms']} ms at concurrency 32")
        rows.append(row)
    serve.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu runs the training rows only, to check the code path")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per row")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per step (length 128)")
    parser.add_argument("--models", nargs="+", choices=["minilm", "bert-base"], default=["minilm", "bert-base"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, when its name is not in the table")
    parser.add_argument("--serve-seconds", type=float, default=8.0)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False, nothing measured")
        print(json.dumps({"gpu": False}))
        return
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    peak = peak_tflops(name, args.peak_tflops) if device.type == "cuda" else None
    print(f"device {name}, bf16 peak {peak} TFLOP/s, MiniLM weights {minilm_weights()}")
    figures: dict = {"gpu": device.type == "cuda", "device_name": name, "peak_bf16_tflops": peak, "minilm_weights": minilm_weights(), "training": training_rows(device, args, peak)}
    base = {r["model"]: r["tokens_per_s"] for r in figures["training"] if r["precision"] == "fp32"}
    figures["speedup_vs_fp32"] = {f"{r['model']}_{r['precision']}{'_compiled' if r['compiled'] else ''}": round(r["tokens_per_s"] / base[r["model"]], 3) for r in figures["training"] if r["precision"] != "fp32"}
    if device.type == "cuda":
        from cluster.connect import connect

        with tempfile.TemporaryDirectory() as tmp:
            connect()
            figures["ray_train"] = ray_train_on_gpu(Path(tmp))
            print(f"Ray Train with use_gpu: {figures['ray_train']}")
            figures["serve_c32"] = serve_rows(Path(tmp), args.serve_seconds)
    save("gpu_check", figures, command=" ".join(["python", *sys.argv]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
