"""Data loading, bad-row reporting, splits, sharding, metrics and the real drug-review data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biomed.data import Columns, load_examples, stratified_split
from biomed.families.text import TextValidator
from biomed.targets import TARGETS
from biomed.metrics import classification_metrics
from biomed.batching import epoch_batches


def _load_text(path):
    columns = Columns(input="text", label="label")
    return load_examples(path, columns=columns, target=TARGETS["classification"], labels=["x", "y"], validator=TextValidator())


def test_missing_text_and_label_rows_are_reported_not_hidden(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c", " ", "e", "f"], "label": ["x", "y", None, "x", "y", None]}), path)
    data = _load_text(path)
    assert data.inputs == ["a", "e"]
    assert list(data.source_rows) == [0, 4]
    reasons = {d.reason.split(" (")[0]: (d.count, d.first_rows) for d in data.dropped}
    assert reasons == {"missing input": (2, [1, 3]), "missing target": (2, [2, 5])}


def test_csv_reads_like_parquet(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"hello, world",x\nbye,y\n')
    data = _load_text(path)
    assert data.inputs == ["hello, world", "bye"] and list(data.targets) == [0, 1]


def test_stratified_split_is_deterministic_and_stratified():
    labels = np.array([0] * 80 + [1] * 20)
    train_a, val_a = stratified_split(labels, fraction=0.2, seed=3)
    train_b, val_b = stratified_split(labels, fraction=0.2, seed=3)
    assert np.array_equal(val_a, val_b) and np.array_equal(train_a, train_b)
    assert sorted(np.concatenate([train_a, val_a])) == list(range(100))
    assert np.bincount(labels[val_a]).tolist() == [16, 4]


@pytest.mark.parametrize("rows,world,batch", [(101, 2, 8), (96, 2, 16), (7, 3, 2), (50, 1, 50)])
def test_epoch_shards_cover_every_row_once_with_equal_steps(rows, world, batch):
    shards = [epoch_batches(rows, epoch=4, seed=0, rank=r, world=world, batch_size=batch) for r in range(world)]
    seen = np.concatenate([b for shard in shards for b in shard])
    assert sorted(seen.tolist()) == list(range(rows))
    assert len({len(s) for s in shards}) == 1
    assert max(len(b) for s in shards for b in s) <= batch
    other_epoch = epoch_batches(rows, epoch=5, seed=0, rank=0, world=world, batch_size=batch)
    assert rows < 10 or not np.array_equal(np.concatenate(other_epoch), np.concatenate(shards[0]))


def test_metrics_survive_a_class_absent_from_validation():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    m = classification_metrics(labels, probs)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["auroc"] == 1.0


def test_drug_reviews_builder_on_the_real_package(tmp_path):
    from biomed.datasets import build_drug_reviews

    summary = build_drug_reviews(tmp_path)
    assert len(summary["labels"]) == 12
    assert "Bipolar Disorder" in summary["labels"] and "Fibromyalgia" in summary["labels"]
    assert not any(label.endswith("Disorde") or "</span>" in label for label in summary["labels"])
    assert (summary["train"]["rows"], summary["test"]["rows"]) == (310, 193)
    assert summary["train"]["missing_condition"]["count"] == 8
    table = pq.read_table(tmp_path / "train.parquet")
    assert set(table.column("condition").to_pylist()) == set(summary["labels"])
    assert "&#039;" not in " ".join(table.column("review").to_pylist())


def test_head_gets_its_own_learning_rate_and_norms_no_decay(planted_dir, tmp_path):
    from biomed.families.sequence.backbones import TINY_BERT, build_bert_classifier
    from jobs.spec import parse_spec
    from jobs.worker import optimizer_for as _optimizer
    from tests.conftest import tiny_spec

    raw = tiny_spec(planted_dir, tmp_path)
    raw["training"] = {**raw["training"], "learning_rate": 1e-4, "head_learning_rate": 1e-2, "weight_decay": 0.05}
    model = build_bert_classifier(TINY_BERT, path=None, labels=["a", "b", "c"], num_outputs=3, dropout=None, vocab_size=30522)
    optimizer = _optimizer(model, parse_spec(raw))
    by_id = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert by_id[id(params["classifier.weight"])]["lr"] == 1e-2
    assert by_id[id(params["classifier.weight"])]["weight_decay"] == 0.05
    assert by_id[id(params["classifier.bias"])]["weight_decay"] == 0.0
    assert by_id[id(params["bert.encoder.layer.0.attention.self.query.weight"])]["lr"] == 1e-4
    assert by_id[id(params["bert.embeddings.LayerNorm.weight"])]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(params)


def test_best_report_follows_mode_and_breaks_ties_to_the_later_epoch():
    from jobs.train import best_report

    reports = [{"epoch": 1, "val_f1": 0.7, "val_loss": 0.9}, {"epoch": 2, "val_f1": 0.8, "val_loss": 0.5}, {"epoch": 3, "val_f1": 0.8, "val_loss": 0.6}]
    assert best_report(reports, key="val_f1", mode="max")["epoch"] == 3
    assert best_report(reports, key="val_loss", mode="min")["epoch"] == 2
