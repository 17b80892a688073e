"""An unchanged spec keeps its run name across the family-folder change: for every shipped
config, the resolved spec hashes the same payload as version 0.1 did (recorded at the commit
before the change, with the data written to a temporary folder shown as <ROOT>)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import register_untrained_backbone

REPO = Path(__file__).resolve().parents[1]
RECORDED = json.loads((Path(__file__).parent / "data" / "v1_run_name_payloads.json").read_text())


@pytest.fixture(scope="module")
def shipped_data(tmp_path_factory):
    """Every packaged data set the shipped configs read, under a temporary working folder."""
    from biomed.datasets import DATASETS
    from biomed.image_datasets import IMAGE_DATASETS

    root = tmp_path_factory.mktemp("shipped")
    for name in ["drug-reviews", "solubility", "freesolv", "breast-cancer", "whas500", "splice-sites", "ww-domains"]:
        DATASETS[name](root / "data" / name.replace("-", "_"))
    DATASETS["moses"](root / "data" / "moses", rows=3000)
    for name, build in IMAGE_DATASETS.items():
        build(root / "data" / name.replace("-", "_"))
    register_untrained_backbone(root / "runs", "smiles-moses", "smiles", "wordlevel", ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "OCC(Cl)C"])
    register_untrained_backbone(root / "runs", "dna-kmers", "dna", "kmer", ["ACGTACGTAC", "GGCCAATT"])
    return root


def _payload(raw: dict, root: Path) -> dict:
    from jobs.pretrain_spec import parse_pretrain_spec, resolve_pretrain
    from jobs.resolve import resolve
    from jobs.run_names import hash_payload
    from jobs.spec import parse_spec

    if "family" in raw:
        spec = resolve_pretrain(parse_pretrain_spec(raw))
        payload = {"spec": spec.model_dump(mode="json", exclude={"failure"}), "spec_hash": spec.spec_hash()}
    else:
        job = resolve(parse_spec(raw))
        payload = {"spec": hash_payload(job.spec), "spec_hash": job.spec_hash()}
        if job.spec.tune is not None:
            payload["tune"] = job.spec.tune.model_dump(mode="json")
    return json.loads(json.dumps(payload).replace(str(root), "<ROOT>"))


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_a_shipped_config_hashes_what_version_0_1_hashed(shipped_data, monkeypatch, name):
    from jobs.spec import read_spec_file

    monkeypatch.chdir(shipped_data)  # the configs name their data and storage relative to it
    raw = read_spec_file(REPO / "configs" / name.split("+")[0])
    if name.endswith("+pretrained"):
        raw["model"] = {"pretrained": "dna-kmers"}
    got, want = _payload(raw, shipped_data), RECORDED[name]
    assert got["spec"] == want["spec"]
    assert got.get("tune") == want.get("tune")
    # The hash is 0.1's: sha256 of that payload, here with this run's data folder for <ROOT>.
    here = json.loads(json.dumps(want["spec"]).replace("<ROOT>", str(shipped_data)))
    assert got["spec_hash"] == hashlib.sha256(json.dumps(here, sort_keys=True).encode()).hexdigest()


def test_a_newer_field_at_its_default_changes_no_run_name(shipped_data, monkeypatch):
    """Fields added after 0.1 are hashed only when set away from their default."""
    from jobs.resolve import resolve
    from jobs.run_names import hash_payload
    from jobs.spec import parse_spec, read_spec_file

    monkeypatch.chdir(shipped_data)
    raw = read_spec_file(REPO / "configs" / "drug_reviews.yaml")
    payload = hash_payload(resolve(parse_spec(raw)).spec)
    assert set(payload["training"]) == set(RECORDED["drug_reviews.yaml"]["spec"]["training"])
    # A field 0.1 had that this family's section lacks is hashed at 0.1's default.
    assert payload["model"]["kmer_size"] == 6 and payload["data"]["images"]["column"] == "image"
