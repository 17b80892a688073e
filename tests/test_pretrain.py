"""`biomed pretrain`: masked-language pretraining over a streamed corpus learns planted structure,
registers a backbone with its lineage, resumes a killed run at the next batch, and refuses bad
corpora before Ray starts."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from biomed.data import fingerprint_files
from biomed.families.protein.planted import PLANTED_PAIR, planted_pair_corpus
from jobs.cli import main
from jobs.pretrain_spec import parse_pretrain_spec, resolve_pretrain
from jobs.resolve import resolve_raw
from jobs.registry import Registry
from jobs.spec import SpecError, parse_spec
from jobs.trainer import run_name
from jobs.worker import MODEL_DIR, STATE_FILE
from tests.conftest import committed, family_spec, register_untrained_backbone, run_killed_once, write_spec


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The planted-pair corpus as two Parquet files of 100-row groups (so units can be held out)."""
    root = tmp_path_factory.mktemp("corpus")
    for k in range(2):
        pq.write_table(planted_pair_corpus(600, seed=k), root / f"part-{k}.parquet", row_group_size=100)
    return root


def pretrain_spec(root: Path, storage: Path, **overrides) -> dict:
    spec = {
        "name": "planted-protein-mlm",
        "family": "protein",
        "corpus": {"train_path": str(root / "*.parquet"), "validation_fraction": 0.1, "shuffle_buffer_rows": 300},
        "model": {"preset": "tiny-bert"},
        "training": {"epochs": 3, "batch_size_per_worker": 32, "learning_rate": 3e-3, "max_seq_length": 48, "warmup_ratio": 0.05},
        "scaling": {"num_workers": 1},
        "storage_path": str(storage),
    }
    spec.update(overrides)
    return spec


def _masked_pair_accuracy(model_dir: str) -> float:
    """How often the model restores a masked Y from the W before it, on fresh sequences."""
    from transformers import AutoTokenizer, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertForMaskedLM.from_pretrained(model_dir).eval()
    first, second = PLANTED_PAIR
    hits = total = 0
    for sequence in planted_pair_corpus(50, seed=99).column("sequence").to_pylist():
        ids = torch.tensor([tokenizer(" ".join(sequence))["input_ids"]])
        targets = [i + 1 for i in range(len(sequence) - 1) if sequence[i] == first]  # +1 for [CLS]
        masked = ids.clone()
        masked[0, [t + 1 for t in targets]] = tokenizer.mask_token_id
        with torch.no_grad():
            predicted = model(input_ids=masked).logits.argmax(-1)[0]
        hits += sum(int(predicted[t + 1] == tokenizer.convert_tokens_to_ids(second)) for t in targets)
        total += len(targets)
    return hits / total


@pytest.fixture(scope="module")
def pretrained(ray_cluster, corpus, tmp_path_factory) -> dict:
    """The planted-pair corpus pretrained through the CLI: {"summary", "storage"}."""
    root = tmp_path_factory.mktemp("pretrained")
    spec_file = write_spec(root / "pretrain.yaml", pretrain_spec(corpus, root / "runs"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["pretrain", str(spec_file), "--json"]) == 0
    return {"summary": json.loads(out.getvalue().strip().splitlines()[-1]), "storage": root / "runs", "spec_file": spec_file}


def test_pretraining_learns_the_planted_pair_and_registers_a_backbone(pretrained, corpus, capsys):
    summary, storage = pretrained["summary"], str(pretrained["storage"])
    model_dir = Path(summary["registered"]["path"])
    for name in ("model.safetensors", "config.json", "tokenizer.json", "biomed.json"):
        assert (model_dir / name).is_file(), name
    # Chance is 1 in 18 residues; only the neighbour gives the masked Y away.
    assert _masked_pair_accuracy(str(model_dir)) > 0.9
    assert summary["val_metrics"]["val_masked_accuracy"] > 0.2
    assert summary["corpus"]["train"]["rows"] + summary["corpus"]["validation"]["rows"] == 1200

    assert main(["models", "show", "planted-protein-mlm", "--storage", storage, "--json"]) == 0
    entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert entry["kind"] == "backbone" and entry["steps"] == summary["steps"] > 0
    assert entry["corpus_fingerprint"] == fingerprint_files(sorted(str(p) for p in corpus.glob("*.parquet")))
    rows = list(csv.DictReader(open(entry["curve_csv"])))
    steps = [int(r["step"]) for r in rows if r["kind"] == "step"]
    accuracy = [float(r["value"]) for r in rows if r["kind"] == "eval" and r["val_metric"] == "masked_accuracy"]
    assert steps == list(range(1, summary["steps"] + 1)) and len(accuracy) == 3 and accuracy[-1] > accuracy[0]

    # The same spec again resumes its run in place: nothing more to train, nothing new registered.
    assert main(["pretrain", str(pretrained["spec_file"]), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (again["run_name"], again["registered"]["version"], again["steps"]) == (summary["run_name"], 1, summary["steps"])


def test_fine_tuning_from_the_backbone_through_train_predict_and_serve(pretrained, family_dir, capsys, monkeypatch):
    from ray import serve

    from cluster.local_head import free_port
    from serving.client import Client
    from serving.deploy import deploy

    storage = pretrained["storage"]
    spec = family_spec("protein", family_dir, storage, name="protein-from-mlm", model={"pretrained": "planted-protein-mlm"})
    assert main(["train", str(write_spec(storage.parent / "finetune.yaml", spec)), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["test_metrics"]["auroc"] > 0.9  # the motif task, learned from the backbone
    entry = Registry(root=storage / "registry").get("protein-from-mlm")
    backbone = entry["pretrained_backbone"]
    assert (backbone["name"], backbone["version"]) == ("planted-protein-mlm", 1) and entry["spec"]["model"]["pretrained"] == "planted-protein-mlm@1"
    assert main(["models", "list", "--storage", str(storage), "--json"]) == 0
    kinds = {r["name"]: r["kind"] for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["models"]}
    assert kinds == {"planted-protein-mlm": "backbone", "protein-from-mlm": "model"}

    sequences = pq.read_table(family_dir / "protein_test.parquet").column("sequence").to_pylist()[:4]
    assert main(["predict", "protein-from-mlm", "--storage", str(storage), "--json", *[a for x in sequences for a in ("--input", x)]]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"]
    monkeypatch.setenv("BIOMED_SERVE_TOKEN", "test-token-0123456789")
    port = free_port()
    deploy(["protein-from-mlm"], storage_path=storage, overrides={"port": port, "num_cpus_per_replica": 0.5, "min_replicas": 1, "max_replicas": 1})
    try:
        with Client(f"http://127.0.0.1:{port}", token="test-token-0123456789") as client:
            served = client.predict("protein-from-mlm", sequences)["predictions"]
    finally:
        serve.shutdown()
    assert [p["label"] for p in served] == [p["label"] for p in cli]
    assert all(abs(a["probabilities"][k] - b["probabilities"][k]) < 1e-5 for a, b in zip(served, cli) for k in a["probabilities"])


def test_a_fine_tune_refuses_a_missing_or_wrong_kind_of_backbone(pretrained, family_dir):
    storage = pretrained["storage"]
    with pytest.raises(SpecError, match="no model named 'nothing-here'"):
        resolve_raw(family_spec("protein", family_dir, storage, model={"pretrained": "nothing-here"}))
    with pytest.raises(SpecError, match="pretrained on protein sequences, not dna"):
        resolve_raw(family_spec("dna", family_dir, storage, model={"pretrained": "planted-protein-mlm", "kmer_size": 3}))


def test_a_dna_fine_tune_reads_bases_the_way_its_backbone_does(family_dir, tmp_path):
    from jobs.resolve import ResolvedJob

    corpus = ["ACGTACGTTATAATGGCC", "TTATAATACGTACGTAA", "GGCCGGCCACGTACGT"]
    register_untrained_backbone(tmp_path, "dna-bpe", "dna", "bpe", corpus)
    register_untrained_backbone(tmp_path, "dna-3mer", "dna", "kmer", corpus)
    job = resolve_raw(family_spec("dna", family_dir, tmp_path, model={"pretrained": "dna-bpe"}))
    bpe = job.spec
    assert (bpe.model.pretrained, bpe.model.kmer_size) == ("dna-bpe@1", None)  # no k-mer cut: BPE over the bases
    again = ResolvedJob.from_dict(job.to_dict())  # as a worker rebuilds it
    assert again.spec.model.kmer_size is None and again.spec_hash() == job.spec_hash()
    encoder = job.family.build_encoder(job, train_inputs=[], statistics=None)
    tokenizer = encoder.sequences.tokenizer
    pieces = tokenizer.convert_ids_to_tokens(encoder.sequences.encode(["TTATAATACGTACGT"], max_length=32)[0])
    assert "".join(p for p in pieces if not p.startswith("[")) == "TTATAATACGTACGT" and max(map(len, pieces)) > 3  # merges, not k-mers
    with pytest.raises(SpecError, match="model.kmer_size 3 differs from backbone 'dna-bpe', which reads DNA by BPE"):
        resolve_raw(family_spec("dna", family_dir, tmp_path, model={"pretrained": "dna-bpe", "kmer_size": 3}))
    kmer = resolve_raw(family_spec("dna", family_dir, tmp_path, model={"pretrained": "dna-3mer"})).spec
    assert (kmer.model.kmer_size, kmer.model.kmer_stride) == (3, 1)  # the backbone's cut, not the default 6
    with pytest.raises(SpecError, match="model.kmer_size 6 differs from backbone 'dna-3mer', which reads DNA as 3-mers with stride 1"):
        resolve_raw(family_spec("dna", family_dir, tmp_path, model={"pretrained": "dna-3mer", "kmer_size": 6}))
    with pytest.raises(SpecError, match="model.kmer_size null .* needs the tokenizer of model.path or model.pretrained"):
        parse_spec(family_spec("dna", family_dir, tmp_path, model={"backbone": "tiny-bert", "kmer_size": None}))


def test_a_pretraining_run_killed_mid_epoch_continues_at_the_next_batch(ray_cluster, corpus, tmp_path):
    from jobs.pretrain import pretrain

    def spec_in(storage: Path):
        raw = pretrain_spec(
            corpus, storage, scaling={"num_workers": 2}, failure={"max_failures": 2},
            training={"epochs": 2, "batch_size_per_worker": 8, "learning_rate": 3e-3, "max_seq_length": 48},
            checkpointing={"every_n_steps": 10, "eval_every_n_steps": 40},
        )
        spec = resolve_pretrain(parse_pretrain_spec(raw))
        return spec, Path(spec.storage_path) / run_name(spec, fingerprint_files(spec.files()))

    spec, whole_dir = spec_in(tmp_path / "whole")
    whole = pretrain(spec)
    killed_spec, killed_dir = spec_in(tmp_path / "killed")
    resumed = run_killed_once(lambda: pretrain(killed_spec), ready=committed(killed_dir, "checkpoint_epoch_0001_batch_"))
    assert resumed["steps"] == whole["steps"]
    last = "checkpoint_epoch_0002"
    _, (epochs_done, batches_done, step) = torch.load(killed_dir / last / STATE_FILE, weights_only=True)["attempt_start_positions"]
    assert epochs_done == 1 and batches_done > 0 and step % 10 == 0  # a step checkpoint of epoch 2
    ours = load_file(str(killed_dir / last / MODEL_DIR / "model.safetensors"))
    reference = load_file(str(whole_dir / last / MODEL_DIR / "model.safetensors"))
    assert all(torch.allclose(ours[k], reference[k], atol=1e-5, rtol=1e-4) for k in reference)


def _write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("corpus_section", "message"),
    [
        ({"train_path": "missing/*.parquet"}, "matches no file"),
        ({"train_path": "{root}/part-0.parquet", "column": "smiles"}, "column 'smiles' is not a column of"),
        ({"train_path": "{tmp}/bad.fasta"}, "is not a readable FASTA file"),
    ],
)
def test_a_bad_corpus_exits_2_naming_the_file_before_ray(corpus, tmp_path, capsys, corpus_section, message):
    (tmp_path / "bad.fasta").write_bytes(b"\xff\xfe>x\n")
    section = {k: v.format(root=corpus, tmp=tmp_path) for k, v in corpus_section.items()}
    spec_file = write_spec(tmp_path / "pretrain.yaml", pretrain_spec(corpus, tmp_path / "runs", corpus=section))
    for command in ("validate", "pretrain"):
        assert main([command, str(spec_file)]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing started, nothing written


def test_sequence_files_read_with_invalid_smiles_dropped_and_counted(tmp_path, capsys):
    # `biomed validate` makes the corpus pass `biomed pretrain` makes before Ray, and reports it.
    _write(tmp_path / "a.smi.gz", "SMILES\nCCO ethanol\nc1ccccc1\nnot_a_smiles\n")
    _write(tmp_path / "b.smi", "CC(=O)O\nCCN\n")
    spec = {"name": "m", "family": "smiles", "corpus": {"train_path": str(tmp_path / "*.smi*")}, "model": {"preset": "tiny-bert"}, "storage_path": str(tmp_path / "runs")}
    assert main(["validate", str(write_spec(tmp_path / "p.yaml", spec)), "--json"]) == 0
    corpus = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["corpus"]
    assert corpus["train"]["rows"] + corpus["validation"]["rows"] == 4
    assert corpus["train"]["dropped"] == [{"file": "a.smi.gz", "reason": corpus["train"]["dropped"][0]["reason"], "count": 1, "first_rows": [2]}]
    spec["corpus"]["invalid_inputs"] = "error"
    assert main(["validate", str(write_spec(tmp_path / "strict.yaml", spec))]) == 2
    assert re.search(r"a\.smi\.gz.*1 invalid inputs.*row 2", capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_a_degenerate_vocabulary_is_a_clear_error(tmp_path, capsys):
    _write(tmp_path / "one.txt", "C\n" * 50)
    _write(tmp_path / "two.txt", "C\n" * 50)
    spec = {"name": "m", "family": "smiles", "corpus": {"train_path": str(tmp_path / "*.txt")}, "model": {"preset": "tiny-bert"}, "storage_path": str(tmp_path / "runs")}
    assert main(["pretrain", str(write_spec(tmp_path / "p.yaml", spec))]) == 2
    assert "learned 1 token(s) from the corpus" in capsys.readouterr().err


def test_fasta_records_join_their_lines(tmp_path):
    from biomed.data import read_table

    path = _write(tmp_path / "p.fasta.gz", ">a desc\nACDE\nFGH\n\n>b\nKLM\n")
    assert read_table(path).column("sequence").to_pylist() == ["ACDEFGH", "KLM"]
    table = read_table(_write(tmp_path / "s.txt", "first line\n\nsecond line\n"))
    assert table == pa.table({"sequence": ["first line", "second line"]})
    assert np.array_equal(np.asarray(read_table(_write(tmp_path / "m.smi", "CCO name\n")).column(0)), np.array(["CCO"]))


def test_moses_is_written_as_parquet_shards_of_smiles(tmp_path, capsys):
    assert main(["data", "moses", "--out", str(tmp_path / "moses"), "--rows", "2500", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["train_rows"], summary["validation_rows"]) == (2500, 1000)
    table = pq.read_table(next((tmp_path / "moses" / "train").glob("*.parquet")))
    assert table.column_names == ["smiles"] and table.num_rows == 2500
    assert main(["data", "drug-reviews", "--out", str(tmp_path / "x"), "--rows", "5"]) == 2


def test_every_pretraining_field_is_described_and_unknown_keys_are_errors(tmp_path):
    from jobs.pretrain_spec import PretrainSpec

    schema = PretrainSpec.model_json_schema()
    for model in [schema, *schema["$defs"].values()]:
        for name, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{model.get('title')}.{name} has no description"
    raw = {"name": "m", "family": "protein", "corpus": {"train_path": str(tmp_path / "*.txt")}, "model": {"preset": "tiny-bert"}}
    _write(tmp_path / "a.txt", "ACDE\n")
    with pytest.raises(SpecError, match="masking.ratio: unknown key"):
        parse_pretrain_spec({**raw, "masking": {"ratio": 0.2}})
    with pytest.raises(SpecError, match="tokenizer.kind 'bpe' is not one of the protein family's"):
        parse_pretrain_spec({**raw, "tokenizer": {"kind": "bpe"}})
    with pytest.raises(SpecError, match="unknown preset 'huge-bert'"):
        parse_pretrain_spec({**raw, "model": {"preset": "huge-bert"}})
    with pytest.raises(SpecError, match="pretraining runs need a folder every node sees"):
        parse_pretrain_spec({**raw, "storage_path": "s3://bucket/runs", "registry_storage_path": str(tmp_path)})


def test_masking_follows_bert_and_masks_whole_kmer_spans():
    from biomed.families import get_family
    from biomed.mlm import IGNORE_INDEX, mask_tokens
    from jobs.pretrain_spec import PretrainSpec

    kmers = PretrainSpec.model_validate({"name": "x", "family": "dna", "corpus": {"train_path": "c.parquet"}, "tokenizer": {"kind": "kmer", "kmer_size": 6}, "model": {"preset": "tiny-bert"}})

    ids = torch.randint(5, 200, (256, 64))
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True  # [CLS] and [SEP] are never chosen
    assert get_family("dna").mask_span(kmers) == 6
    for span in (1, get_family("dna").mask_span(kmers)):
        inputs, labels = mask_tokens(ids, special, mask_id=4, vocab_size=200, span=span, generator=torch.Generator().manual_seed(0))
        chosen = labels != IGNORE_INDEX
        assert abs(chosen[:, 1:-1].float().mean().item() - 0.15) < 0.02 and not chosen[special].any()
        assert torch.equal(labels[chosen], ids[chosen])  # the targets are the original tokens
        assert abs((inputs[chosen] == 4).float().mean().item() - 0.8) < 0.03  # 80% [MASK]
        assert abs((inputs[chosen] == ids[chosen]).float().mean().item() - 0.1) < 0.03  # ~10% kept (+ random hits)
        # Runs of chosen tokens: mostly single tokens for BERT; for overlapping 6-mers whole spans
        # of 6 or more (overlapping spans merge; only a span cut by [SEP] is shorter).
        runs = np.array([len(r) for row in chosen[:, 1:-1].int().tolist() for r in "".join(map(str, row)).split("0") if r])
        assert (np.mean(runs >= 6) > 0.9) if span == 6 else (np.mean(runs) < 1.3)


@pytest.mark.parametrize(("family", "tokenizer", "records", "expected"), [
    ("dna", {"kind": "kmer", "kmer_size": 3}, ">a\nACGTAC\n>b\nGGCATT\n", 5**3 + 5),
    ("dna", {"kind": "bpe", "vocab_size": 20}, ">a\nACGTACGTACGT\n>b\nACGTTTACGT\n", None),
    ("text", {"kind": "wordpiece", "vocab_size": 60}, "the patient had a fever\nno fever after the visit\n", None),
])
def test_each_family_gets_its_tokenizer_from_the_corpus(tmp_path, family, tokenizer, records, expected):
    from jobs.pretrain import TokenizerSample, corpus_indexes, corpus_tokenizer

    suffix = "fasta" if family == "dna" else "txt"
    for k in range(2):
        _write(tmp_path / f"part-{k}.{suffix}", records)
    spec = resolve_pretrain(parse_pretrain_spec({"name": "m", "family": family, "corpus": {"train_path": str(tmp_path / f"*.{suffix}")}, "tokenizer": tokenizer, "model": {"preset": "tiny-bert"}, "storage_path": str(tmp_path)}))
    sample = TokenizerSample(spec)
    corpus_indexes(spec, sample=sample)
    built = corpus_tokenizer(spec, sample, tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenizer.json").is_file() and built.mask_token == "[MASK]"
    if expected:
        assert len(built) == expected
    else:
        assert 5 + 2 <= len(built) <= tokenizer["vocab_size"]
    again = corpus_tokenizer(spec, sample, tmp_path / "tok")  # a resumed run reuses it
    assert again.get_vocab() == built.get_vocab()
