"""Spec validation: every bad input named with its field and value, before any compute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.pretrain_spec import load_pretrain_spec, resolve_pretrain
from jobs.resolve import ResolvedJob, resolve, resolve_raw
from jobs.spec import SpecError, load_spec, parse_spec, spec_schema
from tests.conftest import register_untrained_backbone, tiny_spec, write_spec


def _error(raw: dict) -> str:
    with pytest.raises(SpecError) as info:
        resolve_raw(raw)
    return str(info.value)


def test_valid_spec_fills_labels_and_task_defaults(planted_dir, tmp_path):
    spec = resolve_raw(tiny_spec(planted_dir, tmp_path)).spec
    assert spec.task.labels == ["cardiac", "hepatic", "renal"]
    assert (spec.metric, spec.mode) == ("macro_f1", "max")
    assert spec.data.train_path.startswith("/")


def test_parsing_reads_no_file_and_a_resolved_job_travels_as_a_dict(planted_dir, tmp_path):
    """The spec is pure: parsing names no missing file and fills nothing from data; resolution
    does that once, and a worker rebuilds the resolved job from a dict without reading again."""
    raw = tiny_spec(planted_dir, tmp_path)
    raw["data"] = {**raw["data"], "test_path": str(tmp_path / "not-yet.parquet")}
    spec = parse_spec(raw)  # no file is looked at
    assert spec.task.labels is None and spec.training.group_by_length is False
    import shutil

    data = tmp_path / "data"
    shutil.copytree(planted_dir, data)
    job = resolve_raw(tiny_spec(data, tmp_path))
    shutil.rmtree(data)  # a worker that read the files again would fail now
    rebuilt = ResolvedJob.from_dict(json.loads(json.dumps(job.to_dict())))
    assert rebuilt.run_name == job.run_name and rebuilt.spec == job.spec
    with pytest.raises(ValueError, match="frozen"):
        job.spec.task.labels = ["other"]


def test_unknown_key_is_named(planted_dir, tmp_path):
    raw = tiny_spec(planted_dir, tmp_path)
    raw["training"] = {**raw["training"], "epoch": 3}
    assert "training.epoch: unknown key" in _error(raw)


def test_wrong_type_names_field_and_value(planted_dir, tmp_path):
    raw = tiny_spec(planted_dir, tmp_path)
    raw["training"] = {**raw["training"], "epochs": "ten"}
    message = _error(raw)
    assert "training.epochs" in message and "'ten'" in message


def test_out_of_range_value(planted_dir, tmp_path):
    raw = tiny_spec(planted_dir, tmp_path)
    raw["training"] = {**raw["training"], "precision": "fp8"}
    message = _error(raw)
    assert "training.precision" in message and "'fp8'" in message


def test_missing_file_is_named(planted_dir, tmp_path):
    raw = tiny_spec(planted_dir, tmp_path)
    raw["data"] = {**raw["data"], "test_path": str(tmp_path / "nope.parquet")}
    message = _error(raw)
    assert "data.test_path" in message and "nope.parquet" in message


def test_unknown_task(planted_dir, tmp_path):
    raw = tiny_spec(planted_dir, tmp_path, task={"name": "text_clasification"})
    message = _error(raw)
    assert "task.name" in message and "'text_clasification'" in message and "text_classification" in message


def test_label_column_absent_from_data(planted_dir, tmp_path):
    raw = tiny_spec(planted_dir, tmp_path)
    raw["data"] = {**raw["data"], "label_column": "diagnosis"}
    message = _error(raw)
    assert "'diagnosis'" in message and "train.parquet" in message


def test_metric_the_task_does_not_produce(planted_dir, tmp_path):
    raw = tiny_spec(planted_dir, tmp_path, checkpointing={"metric": "rmse"})
    message = _error(raw)
    assert "checkpointing.metric 'rmse'" in message and "macro_f1" in message


def test_unknown_backbone_and_exclusive_model_source(planted_dir, tmp_path):
    assert "'bert-huge'" in _error(tiny_spec(planted_dir, tmp_path, model={"backbone": "bert-huge"}))
    from biomed.families.text import MINILM

    real_folder = str(MINILM.path())
    assert resolve_raw(tiny_spec(planted_dir, tmp_path, model={"path": real_folder})).spec.model.path == real_folder
    both = tiny_spec(planted_dir, tmp_path, model={"backbone": "tiny-bert", "path": real_folder})
    assert "exactly one of model.backbone, model.path or model.pretrained" in _error(both)
    assert "exactly one of model.backbone, model.path or model.pretrained" in _error(tiny_spec(planted_dir, tmp_path, model={}))


def test_model_path_without_safetensors_is_refused(planted_dir, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "vocab.txt").write_text("[PAD]\n")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    message = _error(tiny_spec(planted_dir, tmp_path, model={"path": str(folder)}))
    assert "model.path" in message and "safetensors" in message


def test_run_identity_follows_training_settings_only(planted_dir, tmp_path):
    from dataclasses import replace

    base = resolve_raw(tiny_spec(planted_dir, tmp_path))
    same = resolve_raw(tiny_spec(planted_dir, tmp_path))
    changed = resolve_raw(tiny_spec(planted_dir, tmp_path, training={**tiny_spec(planted_dir, tmp_path)["training"], "learning_rate": 1e-3}))
    retries = resolve_raw(tiny_spec(planted_dir, tmp_path, failure={"max_failures": 5}))
    assert base.run_name == same.run_name == retries.run_name
    assert changed.run_name != base.run_name
    assert replace(base, data_fingerprint="other-data").run_name != base.run_name


def _cli(*args: str) -> subprocess.CompletedProcess:
    # Reports whether Ray got imported, to prove validation starts no cluster.
    code = "import sys; from jobs.cli import main; rc = main(sys.argv[1:]); print('RAY_IMPORTED', 'ray' in sys.modules, file=sys.stderr); sys.exit(rc)"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_cli_validate_ok_and_bad_without_ray(planted_dir, tmp_path):
    good = write_spec(tmp_path / "good.yaml", tiny_spec(planted_dir, tmp_path))
    ok = _cli("validate", str(good), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["labels"] == ["cardiac", "hepatic", "renal"]
    assert "RAY_IMPORTED False" in ok.stderr
    raw = tiny_spec(planted_dir, tmp_path, task={"name": "text_classification", "labels": ["cardiac", "renal"]})
    bad = _cli("validate", str(write_spec(tmp_path / "bad.yaml", raw)))
    assert bad.returncode == 2
    assert "outside the task's labels" in bad.stderr and "hepatic" in bad.stderr


def test_schema_describes_every_field():
    schema = spec_schema()
    assert len(schema["oneOf"]) >= 6  # one arm per task family
    defs = schema["$defs"]
    for model in [schema, *defs.values()]:
        for name, prop in model.get("properties", {}).items():
            assert prop.get("description"), f"{model.get('title')}.{name} has no description"


def test_shipped_configs_validate(tmp_path, monkeypatch):
    # Every config under configs/ is a test case; run from a fresh folder with the packaged data
    # built the way the README does it.
    from biomed.datasets import DATASETS
    from biomed.image_datasets import IMAGE_DATASETS

    # Pretraining specs first: the fine-tune configs that start from their backbones need them registered.
    configs = sorted(Path("configs").resolve().glob("*.yaml"), key=lambda p: ("family" not in yaml.safe_load(p.read_text()), p.name))
    assert configs
    monkeypatch.chdir(tmp_path)
    for name, build in {**DATASETS, **IMAGE_DATASETS}.items():
        build(tmp_path / "data" / name.replace("-", "_"))
    tasks, families = set(), set()
    for path in configs:
        raw = yaml.safe_load(path.read_text())
        assert path.read_text().startswith("# "), f"{path.name} has no header"
        if "family" in raw:  # a `biomed pretrain` spec
            spec = resolve_pretrain(load_pretrain_spec(path))
            families.add(spec.family)
            register_untrained_backbone(Path(spec.storage_path), spec.name, spec.family, "wordlevel", ["CCO", "c1ccccc1N", "CC(=O)Cl"])  # what running it would register
        else:
            spec = resolve(load_spec(path)).spec
            tasks.add(spec.task.name)
        assert spec.storage_path.startswith(str(tmp_path))
    assert "smiles" in families
    # One documented config per family.
    assert {"text_classification", "dna_classification", "protein_classification", "molecule_regression", "tabular_classification", "survival", "image_classification"} <= tasks


def test_step_checkpoint_and_length_grouping_fields(planted_dir, tmp_path, family_dir):
    from tests.conftest import family_spec

    raw = tiny_spec(planted_dir, tmp_path, checkpointing={"every_n_steps": 0})
    assert "checkpointing.every_n_steps" in _error(raw) and "0" in _error(raw)
    spec = parse_spec(tiny_spec(planted_dir, tmp_path, checkpointing={"every_n_steps": 50, "eval_every_n_steps": 200}))
    assert (spec.checkpointing.every_n_steps, spec.checkpointing.eval_every_n_steps) == (50, 200)
    assert resolve_raw(tiny_spec(planted_dir, tmp_path, training={"epochs": 1})).spec.training.group_by_length  # on by default for sequences
    assert not resolve_raw(tiny_spec(planted_dir, tmp_path, training={"group_by_length": False})).spec.training.group_by_length
    tabular = family_spec("tabular", family_dir, tmp_path)
    assert resolve_raw(tabular).spec.training.group_by_length is False  # off for feature rows
    tabular["training"] = {**tabular["training"], "group_by_length": True}
    assert "training.group_by_length is for sequence inputs" in _error(tabular)


@pytest.mark.parametrize("command", [
    ["validate"], ["schema"], ["data"], ["train"], ["pretrain"], ["tune"], ["models", "list"], ["models", "show"], ["predict"],
    ["cluster", "up"], ["cluster", "info"], ["submit"], ["jobs", "list"], ["serve", "deploy"], ["serve", "status"],
])
def test_every_command_prints_its_help(command, capsys):
    # Help texts come from the specs' field descriptions; argparse formats them with %.
    from jobs.cli import build_parser

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0 and "usage: biomed" in capsys.readouterr().out
