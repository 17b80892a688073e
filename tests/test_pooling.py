"""The mean-pooled BERT head (biomed/families/sequence/heads.py) and how a spec picks it. No Ray."""

from __future__ import annotations

import json

import pytest
import torch

from biomed.families.sequence.backbones import TINY_BERT, build_bert_classifier
from biomed.families.text import MINILM
from jobs.resolve import resolve_raw
from jobs.spec import SpecError
from tests.conftest import tiny_spec


def test_mean_pooling_ignores_padding_and_reloads_with_auto_classes(tmp_path):
    import biomed.families.sequence.heads  # noqa: F401  (registers the class, as a user would)
    from transformers import AutoModelForSequenceClassification

    model = build_bert_classifier(TINY_BERT, path=None, labels=["a", "b"], num_outputs=2, dropout=None, vocab_size=50, pooling="mean").eval()
    ids = torch.tensor([[2, 7, 9, 11, 3]])
    padded = torch.tensor([[2, 7, 9, 11, 3, 0, 0, 0], [2, 5, 3, 0, 0, 0, 0, 0]])
    mask = (padded != 0).long()
    with torch.inference_mode():
        alone = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        batch = model(input_ids=padded, attention_mask=mask).logits
        # The head reads the mean state, not [CLS]: changing a later token moves the output.
        moved = model(input_ids=torch.tensor([[2, 7, 9, 12, 3]]), attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(alone, batch[:1], atol=1e-5)
    assert not torch.allclose(alone, moved, atol=1e-4)

    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "biomed-mean-pooled-bert"
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.inference_mode():
        assert torch.allclose(reloaded(input_ids=padded, attention_mask=mask).logits, batch, atol=1e-6)


def test_mean_pooled_minilm_keeps_every_pretrained_body_weight():
    from safetensors.torch import load_file

    model = build_bert_classifier(MINILM, path=None, labels=["a", "b"], num_outputs=2, dropout=None)
    assert type(model).__name__ == "MeanPooledBertForSequenceClassification"
    pretrained = load_file(MINILM.path() / "model.safetensors")
    body = model.bert.state_dict()
    # position_ids is a non-persistent buffer in transformers 5, not a weight.
    names = [n for n in pretrained if not n.startswith("pooler.") and not n.endswith("position_ids")]
    assert len(names) > 90
    for name in names:
        assert torch.equal(body[name.removeprefix("bert.")], pretrained[name]), name


def test_spec_resolves_pooling_per_backbone_and_rejects_misuse(planted_dir, tmp_path):
    spec = resolve_raw(tiny_spec(planted_dir, tmp_path)).spec
    assert spec.model.pooling == "cls"
    minilm = resolve_raw(tiny_spec(planted_dir, tmp_path, model={"backbone": "all-minilm-l6-v2"}))
    assert minilm.spec.model.pooling == "mean"
    explicit = resolve_raw(tiny_spec(planted_dir, tmp_path, model={"backbone": "all-minilm-l6-v2", "pooling": "cls"}))
    # Another architecture is another run: the run name must not resume the other's checkpoints.
    assert explicit.spec_hash() != minilm.spec_hash()
    with pytest.raises(SpecError, match="model.pooling"):
        resolve_raw(tiny_spec(planted_dir, tmp_path, model={"backbone": "tiny-bert", "pooling": "max"}))
