"""Explanations, measured for faithfulness on every family's planted signal.

Each family's model is trained on data whose label (or hazard) is decided by a known part of
the input: a marker word, a DNA motif, a residue motif, a nitro group (for the SMILES
transformer and for `dmpnn`), the signal columns of a table, a lesion in an image. On inputs
that hold it, at least 80% of the positive attribution mass must land on that part (the share
the part takes of the input is reported beside it), and removing the top-attributed units must
lower the explained output more than removing as many random ones. Then the interfaces: the
CLI with --html checked in headless Chromium, and `POST /{model}/explain` over real HTTP.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq
import pytest

from biomed.checkpoint import Predictor
from biomed.explain import deletion_curves, explain, explain_units, positive_share, relative_gap
from biomed.families.dna import MOTIF as DNA_MOTIF
from biomed.families.images.planted import lesion_mass
from biomed.families.molecules.planted import nitro_part, planted_nitro_table
from biomed.families.protein.planted import MOTIF as PROTEIN_MOTIF
from biomed.families.sequence.planted import motif_part
from biomed.families.tabular.planted import high_risk, signal_part
from biomed.families.text.planted import marker_part
from jobs.spec import parse_spec

PLANTED_MASS = 0.8
CASES = 12  # inputs per family


@dataclass
class Case:
    raw: object
    target: str | None
    inside: Callable[[dict], bool]


@pytest.fixture(scope="module")
def decoy_dir(tmp_path_factory) -> Path:
    """The nitro set with a same-size decoy in every "none" molecule, so size tells nothing: a
    SMILES transformer would otherwise read the label off the length, which a reference of as
    many [PAD] tokens keeps, and its explanations would rightly find nothing in the atoms."""
    folder = tmp_path_factory.mktemp("nitro-decoy")
    pq.write_table(planted_nitro_table(360, seed=1, decoy=True), folder / "train.parquet")
    pq.write_table(planted_nitro_table(160, seed=2, decoy=True), folder / "test.parquet")
    return folder


@pytest.fixture(scope="module")
def smiles_bert(ray_cluster, decoy_dir, tmp_path_factory) -> dict:
    """A SMILES transformer (tiny BERT over atom tokens) on the decoy nitro set."""
    from jobs.train import train
    from tests.conftest import nitro_spec

    storage = tmp_path_factory.mktemp("nitro-bert")
    raw = nitro_spec(decoy_dir, storage, name="nitro-bert", workers=1, epochs=8, learning_rate=3e-3)
    raw["model"] = {"backbone": "tiny-bert"}
    return {"summary": train(parse_spec(raw)), "storage": storage, "data": decoy_dir}


def _rows(path: Path, **where) -> list[dict]:
    return [r for r in pq.read_table(path).to_pylist() if all(r[k] == v for k, v in where.items())][: 2 * CASES]


def family_cases(name: str, request) -> tuple[str, list[Case]]:
    """(registered folder, planted inputs) of one family's model: twice CASES candidates."""
    if name == "text":
        run = request.getfixturevalue("lesion_run")["text"]  # a mean-pooled tiny BERT on planted_dir's marker words
        rows = _rows(request.getfixturevalue("planted_dir") / "test.parquet")
        return run["registered"]["path"], [Case(r["text"], r["label"], marker_part(r["text"], r["label"])) for r in rows]
    if name in ("smiles-bert", "dmpnn"):
        run = request.getfixturevalue("smiles_bert" if name == "smiles-bert" else "nitro_run")["summary"]
        rows = _rows(request.getfixturevalue("decoy_dir" if name == "smiles-bert" else "nitro_dir") / "test.parquet", label="nitro")
        return run["registered"]["path"], [Case(r["smiles"], "nitro", nitro_part(r["smiles"])) for r in rows]
    models, folder = request.getfixturevalue("family_models"), request.getfixturevalue("family_dir")
    path = models[name]["registered"]["path"]
    if name in ("dna", "protein"):
        motif = {"dna": DNA_MOTIF, "protein": PROTEIN_MOTIF}[name]
        return path, [Case(r["sequence"], "motif", motif_part(r["sequence"], motif)) for r in _rows(folder / f"{name}_test.parquet", label="motif")]
    validator = Predictor(directory=path).validator
    rows = pq.read_table(folder / f"{name}_test.parquet").select([*validator.numeric, *validator.categorical]).to_pylist()
    if name == "survival":  # records whose signal raises the risk score being explained
        rows = [r for r in rows if high_risk(r)]
    return path, [Case(r, None, signal_part("survival" if name == "survival" else "classification")) for r in rows[: 2 * CASES]]


@pytest.mark.parametrize("name", ["text", "dna", "protein", "smiles-bert", "dmpnn", "tabular", "survival"])
def test_attributions_land_on_the_planted_signal_and_deleting_them_matters_most(request, record_property, name):
    folder, cases = family_cases(name, request)
    predictor = Predictor(directory=folder)
    shares, part, top, random, gaps = [], [], [], [], []
    for case in cases:
        if len(shares) == CASES:
            break
        ((head, explained),) = explain_units(predictor, [case.raw], target=case.target)
        if case.target is not None and head["prediction"]["label"] != case.target:
            continue  # the model missed the signal in this input: nothing of it to find
        entries = explained.payload["attributions"]
        shares.append(positive_share(entries, case.inside))
        part.append(sum(map(case.inside, entries)) / len(entries))
        curves = deletion_curves(explained, max_units=max(1, sum(map(case.inside, entries))))
        top.append(curves["drop_top"])
        random.append(curves["drop_random"])
        gaps.append(relative_gap(explained.payload))
        if name != "dmpnn":  # the reported gap is the true one: |sum of scores - (f(input) - f(reference))|
            change = explained.output_without([]) - explained.output_without(range(len(explained.unit_scores)))
            total = sum(a["score"] for a in entries)
            assert abs(abs(total - change) - explained.payload["convergence_delta"]) <= 1e-3 * max(1.0, abs(change)), (name, total, change)
    record_property("planted_mass", float(np.mean(shares)))
    record_property("planted_share_of_input", float(np.mean(part)))
    record_property("median_relative_gap", float(np.median(gaps)))
    assert len(shares) >= CASES // 2, f"{name}: the model found the signal in {len(shares)} of {len(cases)} inputs"
    assert np.mean(shares) >= PLANTED_MASS, f"{name}: planted mass {np.mean(shares):.3f} (the planted part is {np.mean(part):.3f} of the input) {shares}"
    assert np.mean(top) > np.mean(random), f"{name}: deleting the top units drops the output by {np.mean(top):.3f}, random ones by {np.mean(random):.3f}"


def test_predictions_beside_an_explanation_are_untouched(lesion_run, planted_dir):
    """Captum hooks the explained model's layers; a served replica predicts on other threads
    meanwhile, on the same Predictor. Those predictions must not see the hooks."""
    import threading

    predictor = Predictor(directory=lesion_run["text"]["registered"]["path"])
    texts = pq.read_table(planted_dir / "test.parquet").column("text").to_pylist()[:6]
    expected = predictor.predict(texts)
    alone = explain(predictor, texts[:1], n_steps=64)
    done, beside = threading.Event(), []

    def explaining():
        try:
            for _ in range(3):
                beside.append(explain(predictor, texts[:1], n_steps=64))
        finally:
            done.set()

    worker = threading.Thread(target=explaining)
    worker.start()
    checked = 0
    while not done.is_set():
        np.testing.assert_allclose(predictor.predict(texts), expected, atol=1e-5)
        checked += 1
    worker.join()
    assert checked >= 3 and len(beside) == 3
    for result in beside:
        assert [a["score"] for a in result[0]["attributions"]] == pytest.approx([a["score"] for a in alone[0]["attributions"]], abs=1e-5)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in predictor.model.modules())


def test_the_lesion_gets_the_heat_and_deleting_its_cells_matters_most(lesion_run, lesion_dir, record_property):
    predictor = Predictor(directory=lesion_run["summary"]["registered"]["path"])
    rows = [r for r in pq.read_table(lesion_dir / "test" / "test.parquet").to_pylist() if r["label"] == "lesion"][:CASES]
    files = [(lesion_dir / "test" / r["image"]).read_bytes() for r in rows]
    masses, disks, top, random = [], [], [], []
    for row, (head, explained) in zip(rows, explain_units(predictor, files, target="lesion")):
        payload = explained.payload
        assert len(payload["attributions"]) == 5 and all(len(a["region"]) == 4 for a in payload["attributions"])
        mass, disk = lesion_mass(payload["heatmap_png"], row)
        masses.append(mass)
        disks.append(disk)
        curves = deletion_curves(explained, max_units=2)
        top.append(curves["drop_top"])
        random.append(curves["drop_random"])
    record_property("planted_mass", float(np.mean(masses)))
    record_property("planted_share_of_input", float(np.mean(disks)))
    assert np.mean(masses) >= PLANTED_MASS, f"lesion mass {np.mean(masses):.3f} (the disk is {np.mean(disks):.3f} of the image) {masses}"
    assert np.mean(top) > np.mean(random)


def test_smiles_attributions_map_back_through_canonicalisation(smiles_bert, nitro_run):
    """The same molecule written two ways: each explanation names the user's own atoms and
    characters, and atom by atom they agree (the model read one canonical string)."""
    written = ["OCC(CC)C[N+](=O)[O-]", "[O-][N+](=O)CC(CO)CC"]
    for run in (smiles_bert, nitro_run):
        predictor = Predictor(directory=run["summary"]["registered"]["path"])
        first, second = explain(predictor, written, target="nitro")
        for raw, result in zip(written, (first, second)):
            for a in result["attributions"]:
                if a.get("span") is not None:
                    assert raw[a["span"][0] : a["span"][1]] == a["text"]
        from rdkit import Chem

        # Atom i of the first string is the atom at the same place in the second (the match maps them).
        match = Chem.MolFromSmiles(written[1]).GetSubstructMatch(Chem.MolFromSmiles(written[0]))
        by_atom = {a["atom"]: a for a in second["attributions"] if "atom" in a}
        for a in first["attributions"]:
            if "atom" in a:
                other = by_atom[match[a["atom"]]]
                assert other["text"] == a["text"] and other["score"] == pytest.approx(a["score"], abs=1e-4)


def test_cli_explains_with_a_page_that_chromium_renders(lesion_run, lesion_dir, tmp_path):
    from jobs.cli import main

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it where it may)")
    storage = str(lesion_run["storage"])
    text_ref = f"planted@{lesion_run['text']['registered']['version']}"
    page = tmp_path / "why.html"
    text = "patient reports mild symptoms and the clinician notes heart today"
    out = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "explain", text_ref, "--storage", storage, "--input", text, "--html", str(page), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])["explanations"][0]
    top = max(row["attributions"], key=lambda a: a["score"])
    assert row["target"] == "cardiac" and top["text"] == "heart"
    html = page.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    shot = tmp_path / "why.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,800", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    from PIL import Image

    from biomed.explain_page import FOR

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    # The strongest token is shaded in the full colour; a page that failed to render has none.
    assert (np.abs(pixels.astype(int) - FOR).sum(-1) < 12).sum() > 200
    assert main(["explain", text_ref, "--storage", storage, "--input", text, "--target", "pulmonary"]) == 2  # not a label
    assert main(["explain", f"lesions@{lesion_run['summary']['registered']['version']}", "--storage", storage, "--input", "CCO"]) == 2


def test_cli_explains_graphs_sequences_and_records(nitro_run, family_models, capsys):
    """`biomed explain` answers every family's model in the shape of its inputs."""
    from jobs.cli import main

    def explain_json(ref: str, storage, *inputs: str) -> list[dict]:
        args = ["explain", ref, "--storage", str(storage), "--json"]
        for value in inputs:
            args += ["--input", value]
        assert main(args) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["explanations"]

    nitro = nitro_run["summary"]["registered"]
    (graph,) = explain_json(f"nitro@{nitro['version']}", nitro_run["storage"], "[O-][N+](=O)CCO")
    atoms = {a["atom"]: a["text"] for a in graph["attributions"] if "atom" in a}
    assert atoms == {0: "[O-]", 1: "[N+]", 2: "O", 3: "C", 4: "C", 5: "O"} and graph["method"] == "integrated_gradients"
    assert {tuple(a["bond"]): a["text"] for a in graph["attributions"] if "bond" in a}[(1, 2)] == "="
    storage = Path(family_models["dna"]["run_path"]).parent
    ref = lambda family: f"planted-{family}@{family_models[family]['registered']['version']}"  # noqa: E731
    (protein,) = explain_json(ref("protein"), storage, " acdwchwklm")
    assert [a["text"] for a in protein["attributions"]] == list("acdwchwklm") and protein["attributions"][0]["span"] == [1, 2]
    (record,) = explain_json(ref("survival"), storage, '{"x1": 2.0, "x2": -1.0, "x3": null, "stage": "iii"}')
    assert record["target"] == "risk_score" and {a["feature"]: a["value"] for a in record["attributions"]} == {"x1": 2.0, "x2": -1.0, "x3": None, "stage": "iii"}
    assert main(["explain", ref("survival"), "--storage", str(storage), "--input", '{"x1": 2.0, "x2": -1.0, "x3": 0, "stage": "i"}', "--target", "high"]) == 2


def test_explain_over_http_has_its_own_limits_and_names_a_bad_target(lesion_run, lesion_dir, monkeypatch):
    import httpx
    from ray import serve

    from cluster.local_head import free_port
    from serving.deploy import deploy

    image_ref = f"lesions@{lesion_run['summary']['registered']['version']}"
    text_ref = f"planted@{lesion_run['text']['registered']['version']}"
    token = "explain-token-0123456789"
    monkeypatch.setenv("BIOMED_SERVE_TOKEN", token)
    port = free_port()
    settings = {"port": port, "num_cpus_per_replica": 0.5, "max_replicas": 1, "max_body_bytes": 4_000_000, "explain_max_inputs_per_request": 2}
    deploy([text_ref, image_ref], storage_path=lesion_run["storage"], overrides=settings)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        text = "patient reports mild symptoms and the clinician notes kidney today"
        ok = httpx.post(f"{base}/{text_ref}/explain", json={"inputs": [text], "target": "renal", "n_steps": 16}, headers=headers, timeout=120)
        assert ok.status_code == 200, ok.text
        (row,) = ok.json()["explanations"]
        assert row["target"] == "renal" and row["prediction"]["label"] == "renal"
        assert max(row["attributions"], key=lambda a: a["score"])["text"] == "kidney"
        assert set(row["attributions"][0]) == {"span", "text", "score"}  # no empty keys of other families
        bad = httpx.post(f"{base}/{text_ref}/explain", json={"inputs": [text], "target": "pulmonary"}, headers=headers, timeout=60)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "target"] and "'pulmonary'" in bad.json()["detail"][0]["msg"]
        many = httpx.post(f"{base}/{text_ref}/explain", json={"inputs": [text] * 3}, headers=headers, timeout=60)
        assert many.status_code == 422 and "at most 2 per explain request" in many.text
        assert httpx.post(f"{base}/{text_ref}/predict", json={"inputs": [text] * 3}, headers=headers, timeout=60).status_code == 200
        assert httpx.post(f"{base}/{text_ref}/explain", json={"inputs": [text]}, timeout=60).status_code == 401
        image = (lesion_dir / "test" / pq.read_table(lesion_dir / "test" / "test.parquet").column("image")[0].as_py()).read_bytes()
        uploaded = httpx.post(f"{base}/{image_ref}/explain", files=[("images", ("a.png", image, "image/png"))], data={"target": "lesion", "n_steps": "8"}, headers=headers, timeout=120)
        assert uploaded.status_code == 200, uploaded.text
        picture = uploaded.json()["explanations"][0]
        assert picture["target"] == "lesion" and picture["heatmap_png"] and len(picture["attributions"]) == 5
        document = httpx.get(f"{base}/openapi.json", timeout=60).json()
        assert "/planted/explain" in document["paths"] and "/lesions/explain" in document["paths"]
    finally:
        serve.shutdown()
