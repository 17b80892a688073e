"""Molecule-level features for the transformer backbones (biomed.pooling's featured BERT head).

The planted nitro set again: RDKit's 2D descriptors include a nitro-group count (fr_nitro), so a
tiny BERT whose head reads them learns the label in a few epochs, and its checkpoint must compute
the same standardised features when it is reloaded for predict and serve.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from biomed.families.molecules.planted import planted_nitro_table
from jobs.resolve import resolve_raw
from jobs.spec import SpecError, parse_spec


@pytest.fixture(scope="module")
def nitro_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nitro-features")
    pq.write_table(planted_nitro_table(300, seed=11), folder / "train.parquet")
    pq.write_table(planted_nitro_table(120, seed=12), folder / "test.parquet")
    return folder


def featured_spec(data: Path, storage: Path, **model) -> dict:
    return {
        "name": "nitro-featured",
        "task": {"name": "molecule_classification"},
        "data": {"train_path": str(data / "train.parquet"), "test_path": str(data / "test.parquet"), "text_column": "smiles", "label_column": "label"},
        "model": {"backbone": "tiny-bert", "molecule_features": "rdkit_2d", **model},
        "training": {"epochs": 8, "batch_size_per_worker": 16, "learning_rate": 3e-3},
        "scaling": {"num_workers": 1},
        "checkpointing": {"num_to_keep": 1},
        "storage_path": str(storage),
    }


def test_a_bert_head_reads_molecule_features_end_to_end(ray_cluster, nitro_dir, tmp_path):
    from biomed.checkpoint import Predictor
    from jobs.train import train

    summary = train(parse_spec(featured_spec(nitro_dir, tmp_path)))
    assert summary["test_metrics"]["auroc"] > 0.95, summary["test_metrics"]
    folder = Path(summary["registered"]["path"])
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "biomed-featured-bert" and config["num_features"] > 100
    saved = json.loads((folder / "biomed.json").read_text())["encoder"]["molecule_features"]
    assert saved["kind"] == "rdkit_2d" and len(saved["means"]) == config["num_features"]
    # Reloaded from safetensors and biomed.json alone, it predicts what the run measured.
    test = pq.read_table(nitro_dir / "test.parquet").to_pylist()
    predictor = Predictor(directory=folder)
    first = predictor.predict([r["smiles"] for r in test])
    again = Predictor(directory=folder).predict([r["smiles"] for r in test])
    np.testing.assert_array_equal(first, again)
    nitro = predictor.labels.index("nitro")
    from sklearn.metrics import roc_auc_score

    auroc = roc_auc_score([r["label"] == "nitro" for r in test], first[:, nitro])
    assert auroc == pytest.approx(summary["test_metrics"]["auroc"], abs=1e-4)


def test_molecule_features_are_refused_where_they_cannot_apply(nitro_dir, tmp_path):
    spec = featured_spec(nitro_dir, tmp_path)
    with pytest.raises(SpecError, match="standardised on the training split in memory; data.streaming 'on' streams that split"):
        parse_spec({**spec, "data": {**spec["data"], "streaming": "on"}})
    text = {**spec, "task": {"name": "text_classification"}, "data": {**spec["data"], "text_column": "smiles"}}
    with pytest.raises(SpecError, match="model.molecule_features: unknown key .a field of the smiles family's model section."):
        parse_spec(text)
    auto = {**spec, "data": {**spec["data"], "in_memory_max_rows": 100}}
    from jobs.splits import streams_training

    with pytest.raises(SpecError, match="standardised on the training split in memory; it has 300 rows, over data.in_memory_max_rows"):
        streams_training(parse_spec(auto))


def test_the_featured_head_saves_and_reloads_identically(nitro_dir, tmp_path):
    import torch

    from biomed.checkpoint import Predictor, read_metadata, save_model_checkpoint

    job = resolve_raw(featured_spec(nitro_dir, tmp_path, molecule_features="morgan_count", pooling="mean"))
    family = job.family
    train = planted_nitro_table(50, seed=13).column("smiles").to_pylist()
    encoder = family.build_encoder(job, train_inputs=train, statistics=None)
    assert encoder.num_features == 2048
    model = family.build_model(job, encoder=encoder, labels=["nitro", "none"], num_outputs=2).eval()
    with pytest.raises(ValueError, match="reads 2048 molecule features per input, given None"):
        model(**{k: v for k, v in encoder.encode(train[:2], max_length=64).batch([0, 1]).items() if k != "features"})
    save_model_checkpoint(model, encoder, tmp_path, {"task": "molecule_classification", "labels": ["nitro", "none"], "max_seq_length": 64, "validator": {"kind": "smiles"}})
    assert json.loads((tmp_path / "config.json").read_text())["pooling"] == "mean"
    reloaded = family.load_encoder(tmp_path, read_metadata(tmp_path))
    predictor = Predictor(directory=tmp_path)
    # The predictor's validator writes each SMILES canonically; training saw them so too.
    unseen = predictor.validate(planted_nitro_table(8, seed=14).column("smiles").to_pylist())
    batch = encoder.encode(unseen, max_length=64).batch(np.arange(8))
    np.testing.assert_array_equal(reloaded.encode(unseen, max_length=64).batch(np.arange(8))["features"], batch["features"])
    with torch.inference_mode():
        expected = torch.softmax(model(**batch).logits, -1).numpy()
    np.testing.assert_allclose(predictor.predict(unseen), expected, atol=1e-6)
