"""Each family's tokenizer, validator, split, loss and metrics on small inputs (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from biomed.data import Columns, load_examples
from biomed.families import get_family
from biomed.families.dna import kmer_tokenizer, kmerize
from biomed.families.molecules.chem import murcko_scaffold, scaffold_split
from biomed.families.molecules.smiles import SmilesValidator, smiles_tokenizer
from biomed.families.sequence.tokens import SequenceEncoder
from biomed.families.tabular.features import TabularPreprocessor, TabularValidator
from biomed.inputs import InvalidInputs
from biomed.metrics import bootstrap_ci, expected_calibration_error
from biomed.targets import TARGETS, cox_partial_likelihood_loss
from jobs.resolve import resolve_raw
from jobs.spec import SpecError
from tests.conftest import family_spec


def test_kmers_overlap_with_stride_and_cover_the_tail():
    assert kmerize("ACGTAC", size=3, stride=1) == "ACG CGT GTA TAC"
    assert kmerize("ACGTACG", size=3, stride=3) == "ACG TAC ACG"  # last k-mer ends at the end
    assert kmerize("ACG", size=3, stride=2) == "ACG"


def test_kmer_tokenizer_round_trips_through_save_pretrained(tmp_path):
    encoder = SequenceEncoder("dna", kmer_tokenizer(4), kmer_size=4, kmer_stride=2)
    assert encoder.vocab_size == 5**4 + 5  # every A/C/G/T/N 4-mer plus the special tokens
    ids = encoder.encode(["ACGTNACGTA", "TTTT"], max_length=32)
    unk = encoder.tokenizer.unk_token_id
    assert all(unk not in row for row in ids)
    assert len(ids[0]) == 2 + 4  # [CLS] ACGT GTNA NACG CGTA [SEP]
    encoder.save(tmp_path)
    reloaded = SequenceEncoder.load(tmp_path, encoder.metadata())
    assert reloaded.encode(["ACGTNACGTA", "TTTT"], max_length=32) == ids


def test_dna_and_protein_alphabets_name_row_and_position():
    dna = get_family("dna").make_check()
    assert dna.validate(["acgtn", " ACGT "]) == ["ACGTN", "ACGT"]
    with pytest.raises(InvalidInputs) as error:
        dna.validate(["ACGT", "ACGU", "AC-T"])
    assert [p[0] for p in error.value.problems] == [1, 2]
    assert "'U' at position 3" in str(error.value) and "'-' at position 2" in str(error.value)
    protein = get_family("protein").make_check()
    assert protein.validate(["mkwv"]) == ["MKWV"]
    with pytest.raises(InvalidInputs, match="'J' at position 2 is not in the protein alphabet"):
        protein.validate(["MKJV"])
    with pytest.raises(InvalidInputs, match="not a string"):
        protein.validate([42])


def test_smiles_tokenizer_splits_atoms_and_bracket_atoms():
    encoder = SequenceEncoder("smiles", smiles_tokenizer(["CC(Cl)Br", "c1cc[nH]c1", "[NH4+].O"]))
    tokens = encoder.tokenizer.tokenize("BrCC(Cl)c1cc[nH]c1")
    assert tokens == ["Br", "C", "C", "(", "Cl", ")", "c", "1", "c", "c", "[nH]", "c", "1"]
    assert encoder.tokenizer.tokenize("I")[0] == "[UNK]"  # iodine was never seen in training
    # The vocabulary is sorted, not ranked by frequency: the same on every DDP worker.
    again = SequenceEncoder("smiles", smiles_tokenizer(["[NH4+].O", "c1cc[nH]c1", "CC(Cl)Br"]))
    assert again.tokenizer.get_vocab() == encoder.tokenizer.get_vocab()


def test_invalid_smiles_rows_are_named_or_dropped_and_reported(tmp_path):
    path = tmp_path / "mols.parquet"
    pq.write_table(pa.table({"smiles": ["CCO", "C1CC", "c1ccccc1", "C(C", "OCC"], "y": [1.0, 2.0, 3.0, 4.0, 5.0]}), path)
    kwargs = {"columns": Columns(input="smiles", label="y"), "target": TARGETS["regression"], "labels": None, "validator": SmilesValidator()}
    with pytest.raises(ValueError) as error:
        load_examples(path, **kwargs)
    assert "2 invalid inputs" in str(error.value) and "row 1:" in str(error.value) and "row 3:" in str(error.value)
    kept = load_examples(path, **kwargs, on_invalid="drop")
    assert list(kept.source_rows) == [0, 2, 4] and kept.inputs == ["CCO", "c1ccccc1", "CCO"]  # canonical
    assert kept.dropped[0].count == 2 and kept.dropped[0].first_rows == [1, 3]


def test_scaffold_split_never_shares_a_scaffold():
    smiles = ["c1ccccc1C", "c1ccccc1O", "c1ccccc1N", "C1CCCCC1O", "C1CCCCC1N", "c1ccncc1C", "CCO", "CCN", "c1ccc2ccccc2c1"]
    train, held = scaffold_split(smiles, fraction=0.3)
    assert sorted([*train, *held]) == list(range(len(smiles)))
    assert {murcko_scaffold(smiles[i]) for i in train}.isdisjoint({murcko_scaffold(smiles[i]) for i in held})
    assert 2 <= len(held) <= 4


def test_tabular_validator_names_unknown_missing_and_mistyped_features():
    validator = TabularValidator(numeric=("age", "bmi"), categorical=("sex",))
    assert validator.validate([{"age": 70, "bmi": None, "sex": 1}]) == [{"age": 70.0, "bmi": None, "sex": "1"}]
    with pytest.raises(InvalidInputs) as error:
        validator.validate([{"age": "old", "bmi": 1.0, "sex": "f"}, {"age": 1, "sex": "m", "height": 2}, {"age": True, "bmi": 1, "sex": [1]}])
    text = str(error.value)
    assert "feature 'age' must be a finite number, got 'old'" in text
    assert "unknown features ['height']" in text and "missing features ['bmi']" in text
    assert "feature 'sex' must be a category" in text and "got True" in text


def test_preprocessor_uses_training_statistics_only():
    train = [{"x": 1.0, "c": "a"}, {"x": 3.0, "c": "b"}, {"x": None, "c": "a"}]
    prep = TabularPreprocessor.fit(train, numeric=["x"], categorical=["c"])
    assert prep.means == (2.0,) and prep.stds == (1.0,) and prep.categories == (("a", "b"),)
    test = prep.transform([{"x": 5.0, "c": "z"}, {"x": None, "c": "b"}])
    assert test.tolist() == [[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # unseen category: all zeros
    assert TabularPreprocessor.from_dict(prep.to_dict()) == prep


def test_cox_loss_recovers_scikit_survival_coefficients():
    """A linear model fitted by our Cox partial likelihood lands on sksurv's CoxPH estimate."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    time = np.round(rng.exponential(1 / np.exp(x @ np.array([1.0, -0.5, 0.0]))), 1) + 0.1  # rounding makes ties
    event = rng.random(300) < 0.7
    reference = CoxPHSurvivalAnalysis(alpha=0.0, ties="breslow").fit(x, Surv.from_arrays(event=event, time=time)).coef_
    beta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([beta], max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")
    xt, tt, et = torch.from_numpy(x), torch.from_numpy(time), torch.from_numpy(event.astype(np.float64))

    def closure():
        optimizer.zero_grad()
        loss = cox_partial_likelihood_loss(xt @ beta, tt, et)
        loss.backward()
        return loss

    optimizer.step(closure)
    np.testing.assert_allclose(beta.detach().numpy(), reference, atol=1e-3)


def test_calibration_error_and_bootstrap_interval():
    labels = np.array([0] * 8 + [1] * 2)
    probs = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0)  # 80% right at 0.8
    assert expected_calibration_error(np.zeros(10, dtype=int), probs) == pytest.approx(0.2)
    rng = np.random.default_rng(0)
    values = rng.normal(size=400)
    low, high = bootstrap_ci(lambda rows: float(values[rows].mean()), len(values), seed=1)
    assert low < values.mean() < high and 0.1 < high - low < 0.3  # 2 × 1.96 / sqrt(400) ≈ 0.196


@pytest.mark.parametrize(
    "family,change,message",
    [
        ("dna", {"data": {"split": "scaffold"}}, "data.split 'scaffold' is not offered for task 'dna_classification', which reads dna inputs"),
        ("dna", {"model": {"backbone": "mlp"}}, "backbone 'mlp' takes ['tabular'] inputs"),
        ("protein", {"model": {"backbone": "all-minilm-l6-v2"}}, "the protein family; its backbones: ['antiberty', 'small-bert', 'tiny-bert']"),
        ("protein", {"model": {"hidden_sizes": [8]}}, "model.hidden_sizes: unknown key (a field of the tabular family's model section)"),
        ("dna", {"model": {"kmer_size": 3, "kmer_stride": 4}}, "kmer_stride 4 is larger than kmer_size 3"),
        ("tabular", {"data": {"numeric_columns": [], "categorical_columns": []}}, "needs feature columns"),
        ("tabular", {"data": {"numeric_columns": ["x1", "nope"]}}, "data.train_path: column 'nope' is not a column"),
        ("survival", {"data": {"time_column": None}}, "needs data.time_column and data.event_column"),
        ("smiles", {"task": {"name": "molecule_regression", "labels": ["a", "b"]}}, "task.labels is for classification"),
        ("smiles", {"checkpointing": {"metric": "auroc"}}, "'auroc' is not produced by task 'molecule_regression'"),
        ("smiles", {"data": {"split": "stratified"}}, "predicts a real value"),
    ],
)
def test_family_specs_are_checked_before_any_compute(family_dir, tmp_path, family, change, message):
    raw = family_spec(family, family_dir, tmp_path)
    for section, values in change.items():
        raw[section] = {**raw.get(section, {}), **values}
    with pytest.raises(SpecError) as error:
        resolve_raw(raw)
    assert message in str(error.value)


def test_antiberty_backbone_loads_its_pretrained_weights_and_residue_vocabulary():
    from biomed.families.protein import ANTIBERTY
    from biomed.families.sequence.backbones import build_bert_classifier

    encoder = SequenceEncoder("protein", ANTIBERTY.tokenizer())
    ids = encoder.encode(["EVQLVESGGGLVQ", "MKWX"], max_length=32)
    vocab = encoder.tokenizer.get_vocab()
    assert ids[0][1:-1] == [vocab[r] for r in "EVQLVESGGGLVQ"]  # one token per residue, none unknown
    assert ids[1][1:-1] == [vocab["M"], vocab["K"], vocab["W"], encoder.tokenizer.unk_token_id]  # X → [UNK]
    model = build_bert_classifier(ANTIBERTY, path=None, labels=["a", "b"], num_outputs=2, dropout=None)
    assert sum(p.numel() for p in model.parameters()) > 25_000_000
    pretrained = torch.load(ANTIBERTY.path() / "pytorch_model.bin", weights_only=True, map_location="cpu")
    key = "bert.encoder.layer.7.output.dense.weight"
    assert torch.equal(model.state_dict()[key], pretrained[key])


def test_baselines_of_the_other_targets_learn_planted_signals():
    """Morgan + forest for molecule classification and ridge for tabular regression (their
    model paths share the tested code; their baselines do not)."""
    from biomed.baselines import BaselineContext
    from biomed.metrics import classification_metrics, regression_metrics

    classification, regression = TARGETS["classification"], TARGETS["regression"]
    mols = get_family("smiles").planted(300, seed=0)[0].to_pylist()
    smiles = [r["smiles"] for r in mols]
    has_chlorine = np.array([int("Cl" in s) for s in smiles])
    ctx = BaselineContext(num_classes=2, seed=0, target=classification)
    baseline = get_family("smiles").baseline(classification)
    assert baseline.name == "morgan_random_forest"
    probs = baseline.fit_predict(smiles[:200], has_chlorine[:200], smiles[200:], ctx)
    assert classification_metrics(has_chlorine[200:], probs)["auroc"] > 0.95

    tabular = get_family("tabular")
    rows = tabular.planted(300, seed=0)[0].to_pylist()
    features = [{k: r[k] for k in ("x1", "x2", "x3", "x4", "site")} for r in rows]
    value = np.array([r["x1"] - 2 * r["x2"] for r in rows])
    ctx = BaselineContext(num_classes=0, seed=0, target=regression, options={"numeric": ("x1", "x2", "x3", "x4"), "categorical": ("site",)})
    ridge = tabular.baseline(regression)
    assert ridge.name == "ridge"
    assert regression_metrics(value[200:], ridge.fit_predict(features[:200], value[:200], features[200:], ctx))["r2"] > 0.99
