"""Ray Serve over real HTTP: tiny models trained and registered here, served on the session's
local Ray, queried with httpx and the package's client."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cluster.local_head import free_port
from jobs.registry import Registry
from jobs.spec import parse_spec
from jobs.train import train
from serving.client import Client, ServeError
from tests.conftest import tiny_spec

TOKEN = "test-token-0123456789"
RENAMED = {"cardiac": "heart", "renal": "kidney", "hepatic": "liver"}


def _renamed_copy(src: Path, dst: Path) -> None:
    table = pq.read_table(src)
    labels = [RENAMED[x] for x in table.column("label").to_pylist()]
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels)), dst)


@pytest.fixture(scope="module")
def served(ray_cluster, planted_dir, tmp_path_factory, monkeypatch_module):
    from ray import serve

    from serving.deploy import deploy

    monkeypatch_module.setenv("BIOMED_SERVE_TOKEN", TOKEN)
    root = tmp_path_factory.mktemp("serve")
    other = root / "other"
    other.mkdir()
    _renamed_copy(planted_dir / "train.parquet", other / "train.parquet")
    _renamed_copy(planted_dir / "test.parquet", other / "test.parquet")
    storage = root / "runs"
    training = {"epochs": 4, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 40, "group_by_length": False}  # see tiny_spec
    # The second model reads the mean token state (biomed.pooling), the first stock [CLS].
    for name, data, pooling in (("planted", planted_dir, "cls"), ("planted-other", other, "mean")):
        model = {"backbone": "tiny-bert", "pooling": pooling}
        train(parse_spec(tiny_spec(data, storage, name=name, model=model, training=training, scaling={"num_workers": 1})))
    port = free_port()
    settings = {
        "port": port, "num_cpus_per_replica": 0.5, "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
        "upscale_delay_s": 0.5, "downscale_delay_s": 2.0, "max_body_bytes": 4096, "max_inputs_per_request": 8, "max_batch_size": 8,
    }
    summary = deploy(["planted", "planted-other"], storage_path=storage, overrides=settings)
    yield {"url": f"http://127.0.0.1:{port}", "storage": storage, "summary": summary, "settings": settings}
    serve.shutdown()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("name, architecture", [("planted", "BertForSequenceClassification"), ("planted-other", "MeanPooledBertForSequenceClassification")])
def test_predict_matches_plain_transformers(served, name, architecture):
    import biomed.checkpoint  # noqa: F401  (registers the mean-pooled class with the Auto classes)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    entry = Registry(root=served["storage"] / "registry").get(name)
    texts = pq.read_table(Path(entry["spec"]["data"]["test_path"])).column("text").to_pylist()[:8]
    with Client(served["url"], token=TOKEN) as client:
        answer = client.predict(name, texts)
    tokenizer = AutoTokenizer.from_pretrained(entry["path"])
    model = AutoModelForSequenceClassification.from_pretrained(entry["path"]).eval()
    assert type(model).__name__ == architecture
    with torch.inference_mode():
        logits = model(**tokenizer(texts, truncation=True, max_length=40, padding=True, return_tensors="pt")).logits
    assert [p["label"] for p in answer["predictions"]] == [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert answer["version"] == entry["version"] and answer["model"] == name
    probs = answer["predictions"][0]["probabilities"]
    assert set(probs) == set(model.config.label2id) and abs(sum(probs.values()) - 1) < 1e-4


def test_two_multiplexed_models_answer_with_their_own_labels(served):
    text = "patient reports heart and stable vitals"
    with Client(served["url"], token=TOKEN) as client:
        first = client.predict("planted", [text])["predictions"][0]
        second = client.predict("planted-other@1", [text])["predictions"][0]
        info = client.info("planted-other")
    assert first["label"] == "cardiac" and second["label"] == "heart"
    assert set(second["probabilities"]) == set(RENAMED.values())
    assert info["version"] == 1 and info["labels"] == sorted(RENAMED.values()) and info["test_metrics"]["accuracy"] > 0.8


def test_auth_is_required(served):
    url = served["url"] + "/planted/predict"
    assert httpx.post(url, json={"inputs": ["x"]}).status_code == 401
    assert httpx.post(url, json={"inputs": ["x"]}, headers=_auth("wrong")).status_code == 401
    assert httpx.get(served["url"] + "/planted/info", headers=_auth("wrong")).status_code == 401
    assert httpx.post(url, json={"inputs": ["liver"]}, headers=_auth()).status_code == 200
    assert "/{model}/predict" in httpx.get(served["url"] + "/openapi.json").json()["paths"]


def test_body_limit_and_input_validation(served):
    url = served["url"] + "/planted/predict"
    big = httpx.post(url, json={"inputs": ["word " * 2000]}, headers=_auth())
    assert big.status_code == 413, big.text
    cases = {
        "empty list": ({"inputs": []}, ["body", "inputs"]),
        "blank input": ({"inputs": ["fine text", "   "]}, ["body", "inputs", 1]),
        "too many": ({"inputs": ["a"] * 9}, ["body", "inputs"]),
        "wrong type": ({"inputs": [3]}, ["body", "inputs"]),
        "unknown field": ({"inputs": ["a"], "extra": 1}, ["body", "extra"]),
    }
    for case, (body, loc) in cases.items():
        response = httpx.post(url, json=body, headers=_auth())
        assert response.status_code == 422, (case, response.text)
        locs = [e["loc"][: len(loc)] for e in response.json()["detail"]]
        assert loc in locs, (case, locs)
    for ref in ("no-such-model", "..", "planted@99"):
        assert httpx.post(f"{served['url']}/{ref}/predict", json={"inputs": ["a"]}, headers=_auth()).status_code == 404, ref


def test_replica_urls_answer_like_the_proxy_without_its_hop(served):
    from serving.deploy import replica_urls

    urls = replica_urls("127.0.0.1")
    assert urls and served["summary"]["replica_urls"]
    assert all(u.startswith("http://127.0.0.1:") and 30000 <= int(u.rsplit(":", 1)[1]) <= 31000 for u in urls), urls
    texts = ["patient reports heart and stable vitals", "biopsy shows kidney"]
    with Client(served["url"], token=TOKEN) as proxied, Client(urls + urls, token=TOKEN) as direct:
        for name in ("planted", "planted-other"):
            via_proxy, via_replica = proxied.predict(name, texts), direct.predict(name, texts)
            assert [p["label"] for p in via_replica["predictions"]] == [p["label"] for p in via_proxy["predictions"]]
            for a, b in zip(via_replica["predictions"], via_proxy["predictions"]):
                assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    # The replica's own port runs the same app: the same token, body and input checks.
    url = urls[0] + "/planted/predict"
    assert httpx.post(url, json={"inputs": ["x"]}).status_code == 401
    assert httpx.post(url, json={"inputs": ["word " * 2000]}, headers=_auth()).status_code == 413
    assert httpx.post(url, json={"inputs": ["  "]}, headers=_auth()).status_code == 422
    # A client given a replica that has gone away moves on to the next URL.
    with Client([f"http://127.0.0.1:{free_port()}", urls[0]], token=TOKEN) as client:
        assert client.predict("planted", texts[:1])["predictions"][0]["label"] == "cardiac"


def _load(url: str, *, threads: int, seconds: float, inputs: int, done: threading.Event | None = None) -> list[int]:
    codes: list[int] = []
    stop = time.monotonic() + seconds
    done = done or threading.Event()

    def worker():
        with httpx.Client(timeout=30) as http:
            while time.monotonic() < stop and not done.is_set():
                codes.append(http.post(url, json={"inputs": ["patient reports kidney today"] * inputs}, headers=_auth()).status_code)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return codes


def _running_replicas() -> int:
    from ray import serve

    app = serve.status().applications["biomed"]
    return sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values())


def test_autoscaling_adds_a_replica_under_load(served):
    assert _running_replicas() == 1
    seen = []
    watcher_stop = threading.Event()

    def watch():
        while not watcher_stop.is_set():
            seen.append(_running_replicas())
            if seen[-1] >= 2:
                watcher_stop.set()  # scaled: the load can stop
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    codes = _load(served["url"] + "/planted/predict", threads=6, seconds=40, inputs=8, done=watcher_stop)
    watcher_stop.set()
    watcher.join()
    assert max(seen) >= 2, seen
    assert set(codes) == {200}, set(codes)


def test_overload_gets_fast_503_and_client_timeout_header_cannot_lift_the_limit(served):
    from serving.deploy import deploy, replica_urls

    settings = {**served["settings"], "min_replicas": 1, "max_replicas": 1, "max_ongoing_requests": 2, "max_queued_requests": 1}
    deploy(["planted"], storage_path=served["storage"], overrides=settings)
    url = served["url"] + "/planted/predict"
    codes = _load(url, threads=12, seconds=4, inputs=8)
    assert 200 in codes and 503 in codes, set(codes)
    with httpx.Client(timeout=30) as http:
        while True:  # the queue drains between bursts; take one 503 to inspect
            burst = []
            ts = [threading.Thread(target=lambda: burst.append(http.post(url, json={"inputs": ["a b c"] * 8}, headers=_auth()))) for _ in range(8)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            rejected = [r for r in burst if r.status_code == 503]
            if rejected:
                break
    assert rejected[0].headers.get("retry-after") == "1"
    # The client retries 503s honouring Retry-After and gets its answer.
    with Client(served["url"], token=TOKEN, max_retries=20) as client:
        results = []
        ts = [threading.Thread(target=lambda: results.append(client.predict("planted", ["renal kidney"])["predictions"][0]["label"])) for _ in range(6)]
        [t.start() for t in ts]
        [t.join() for t in ts]
    assert results == ["renal"] * 6
    # A replica's own port applies the same queue bound.
    (direct,) = replica_urls("127.0.0.1")
    codes = _load(direct + "/planted/predict", threads=12, seconds=4, inputs=8)
    assert 200 in codes and 503 in codes, set(codes)

    deploy(["planted"], storage_path=served["storage"], overrides={**served["settings"], "request_timeout_s": 0.001})
    for base in (served["url"], *replica_urls("127.0.0.1")):
        for header in ({}, {"x-request-timeout-seconds": "0"}, {"x-request-timeout-seconds": "600"}):
            response = httpx.post(base + "/planted/predict", json={"inputs": ["a"] * 8}, headers={**_auth(), **header})
            assert response.status_code == 408, (base, header, response.status_code, response.text)


def test_client_raises_on_a_bad_request(served):
    with Client(served["url"], token=TOKEN) as client, pytest.raises(ServeError) as error:
        client.predict("planted", [])
    assert error.value.status_code == 422


def test_cli_deploy_status_shutdown_on_a_local_head(served, tmp_path):
    """`biomed serve deploy` as a user runs it: no address, so a local head on 127.0.0.1 starts and
    outlives the command; `shutdown` stops Serve and exactly that head."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "BIOMED_HOME": str(tmp_path / "home"), "BIOMED_SERVE_TOKEN": TOKEN}
    env.pop("RAY_ADDRESS", None)
    port = free_port()

    def biomed(*args: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "jobs.cli", "serve", *args, "--json"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    deployed = biomed("deploy", "planted-other", "--storage", str(served["storage"]), "--port", str(port), "--num-cpus-per-replica", "0.25")
    head = json.loads((tmp_path / "home" / "local_head.json").read_text())
    try:
        assert deployed["models"] == ["planted-other@1"] and deployed["url"] == f"http://127.0.0.1:{port}"
        assert head["address"].startswith("127.0.0.1:")
        answer = httpx.post(deployed["predict_urls"][0], json={"inputs": "hepatic liver noted"}, headers=_auth()).json()
        assert answer["predictions"][0]["label"] == "liver"
        state = biomed("status")
        assert state["applications"]["biomed"]["status"] == "RUNNING"
        # The local head runs Serve with direct ingress: the replica's own port answers too.
        (direct,) = state["applications"]["biomed"]["replica_urls"]
        assert deployed["replica_urls"] == [direct]
        answer = httpx.post(direct + "/planted-other/predict", json={"inputs": "hepatic liver noted"}, headers=_auth()).json()
        assert answer["predictions"][0]["label"] == "liver"
    finally:
        stopped = biomed("shutdown")
    assert stopped == {"stopped_serve": True, "stopped_local_head": True}
    with pytest.raises(ProcessLookupError):
        os.kill(head["pid"], 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(deployed["url"] + "/openapi.json", timeout=2)


def test_a_deployment_too_big_for_the_cluster_is_refused_and_the_running_one_kept(served):
    from cluster.resources import ResourcesError
    from serving.deploy import deploy

    # Its own replicas would be replaced, so they count as free; 3 CPUs is more than the cluster has.
    expected = r"1 Serve replica\(s\) \(serve.min_replicas, at least 1\) need 1 x \(3 CPU\): \S+ of 2 CPUs are free on 1 node\(s\);( other jobs hold \S+;)? the cluster holds at most 0 in all"
    with pytest.raises(ResourcesError, match=expected):
        deploy(["planted"], storage_path=served["storage"], overrides={**served["settings"], "num_cpus_per_replica": 3})
    from ray import serve

    from serving.config import APP_NAME

    assert serve.status().applications[APP_NAME].status == "RUNNING"  # the deployed app untouched
