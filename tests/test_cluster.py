"""Jobs on a real Ray head started on 127.0.0.1 inside the test run (`biomed cluster up --local`),
driven through the `biomed` CLI as a user runs it: submit, resubmit, stop, logs, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import tiny_spec, write_spec


def _run(args: list[str], *, env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def _last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def head(tmp_path_factory, planted_dir):
    """A local head (2 CPUs, token auth) and a user's project folder with relative data paths."""
    root = tmp_path_factory.mktemp("cluster")
    project = root / "project"
    (project / "data").mkdir(parents=True)
    for split in ("train", "test"):
        (project / "data" / f"{split}.parquet").write_bytes((planted_dir / f"{split}.parquet").read_bytes())
    env = {**os.environ, "BIOMED_HOME": str(root / "home")}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)

    def biomed(*args: str, extra_env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run([sys.executable, "-m", "jobs.cli", *args], env={**env, **(extra_env or {})}, cwd=project, timeout=timeout)

    up = biomed("cluster", "up", "--local", "--num-cpus", "2", "--json")
    assert up.returncode == 0, up.stderr[-3000:]
    record = _last_json(up)
    try:
        yield {"url": record["dashboard_url"], "address": record["address"], "pid": record["pid"], "project": project, "storage": root / "runs", "biomed": biomed, "env": env}
    finally:
        down = biomed("cluster", "down", "--json")
    assert _last_json(down) == {"stopped_local_head": True}
    with pytest.raises(ProcessLookupError):
        os.kill(record["pid"], 0)


def _spec(head, filename: str, **overrides) -> str:
    spec = tiny_spec(Path("data"), Path("runs"), **overrides)
    spec["data"] = {"train_path": "data/train.parquet", "test_path": "data/test.parquet"}
    del spec["storage_path"]  # relative default; --storage-path points it at shared storage
    write_spec(head["project"] / filename, spec)
    return filename


def _job_ids(head) -> list[str]:
    listed = head["biomed"]("jobs", "list", "--address", head["url"], "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    return [j["submission_id"] for j in _last_json(listed)["jobs"]]


def test_cluster_info_reports_the_heads_resources(head):
    info = head["biomed"]("cluster", "info", "--address", head["url"], "--json")
    assert info.returncode == 0, info.stderr[-2000:]
    payload = _last_json(info)
    assert payload["num_cpus"] == 2 and payload["num_gpus"] == 0 and payload["num_nodes"] == 1
    assert payload["nodes"][0]["is_head"]
    # The same figures when joining as a driver through the GCS address.
    joined = head["biomed"]("cluster", "info", "--address", head["address"], "--json")
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert {k: _last_json(joined)[k] for k in ("num_cpus", "num_gpus", "num_nodes")} == {"num_cpus": 2, "num_gpus": 0, "num_nodes": 1}


def test_submitted_job_succeeds_registers_its_checkpoint_and_is_not_resubmitted(head):
    biomed, storage = head["biomed"], str(head["storage"])
    spec = _spec(head, "spec.yaml", training={"epochs": 3, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 40, "group_by_length": False}, scaling={"num_workers": 2})
    done = biomed("submit", spec, "--address", head["url"], "--storage-path", storage, "--follow", "--json")
    assert done.returncode == 0, done.stderr[-4000:]
    job = _last_json(done)
    assert job["submitted"] and job["status"] == "SUCCEEDED"
    assert job["submission_id"].startswith("biomed-train-planted-")
    # The job trained on the cluster and registered where the user's CLI looks.
    models = _last_json(biomed("models", "list", "--storage", storage, "--json"))["models"]
    assert [(m["name"], m["num_versions"]) for m in models] == [("planted", 1)]
    entry = _last_json(biomed("models", "show", "planted", "--storage", storage, "--json"))
    assert (Path(entry["path"]) / "model.safetensors").is_file()

    again = biomed("submit", spec, "--address", head["url"], "--storage-path", storage, "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    repeat = _last_json(again)
    assert repeat["submitted"] is False and repeat["submission_id"] == job["submission_id"] and repeat["status"] == "SUCCEEDED"
    assert _job_ids(head).count(job["submission_id"]) == 1

    # Ray's own CLI sees the same job.
    ray_cli = _run([str(Path(sys.executable).with_name("ray")), "job", "list", "--address", head["url"]], env={**head["env"], "RAY_AUTH_MODE": "token"}, cwd=head["project"])
    assert ray_cli.returncode == 0 and job["submission_id"] in ray_cli.stdout + ray_cli.stderr


def test_stop_a_running_job_and_read_its_logs(head):
    biomed = head["biomed"]
    spec = _spec(head, "long.yaml", name="planted-long", training={"epochs": 200, "batch_size_per_worker": 8, "learning_rate": 1e-3, "max_seq_length": 40, "group_by_length": False}, scaling={"num_workers": 1})
    submitted = biomed("submit", spec, "--address", head["url"], "--storage-path", str(head["storage"]), "--json")
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    job_id = _last_json(submitted)["submission_id"]
    deadline = time.monotonic() + 180
    logs = ""
    while time.monotonic() < deadline and "epoch 1/200" not in logs:
        time.sleep(2)
        logs = biomed("jobs", "logs", job_id, "--address", head["url"]).stdout
    assert "epoch 1/200" in logs, logs[-3000:]
    stopped = biomed("jobs", "stop", job_id, "--address", head["url"], "--json")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert _last_json(stopped)["status"] == "STOPPED"
    status = _last_json(biomed("jobs", "status", job_id, "--address", head["url"], "--json"))
    assert status["status"] == "STOPPED"


def test_ray_job_submit_runs_biomed_train(head):
    spec = _spec(head, "raw.yaml", name="planted-raw", training={"epochs": 1, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 40, "group_by_length": False}, scaling={"num_workers": 1})
    storage = head["storage"] / "raw"
    ray = str(Path(sys.executable).with_name("ray"))
    proc = _run(
        [ray, "job", "submit", "--address", head["url"], "--working-dir", ".", "--", "biomed", "train", spec, "--storage-path", str(storage), "--json"],
        env={**head["env"], "RAY_AUTH_MODE": "token"},
        cwd=head["project"],
    )
    assert proc.returncode == 0 and "succeeded" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    models = _last_json(head["biomed"]("models", "list", "--storage", str(storage), "--json"))["models"]
    assert [m["name"] for m in models] == ["planted-raw"]


def test_refusals_are_clear_and_submit_nothing(head):
    biomed, url = head["biomed"], head["url"]
    spec = _spec(head, "refused.yaml", name="planted-refused")
    before = _job_ids(head)

    no_token = biomed("submit", spec, "--address", url, "--storage-path", str(head["storage"]), extra_env={"RAY_AUTH_MODE": "disabled"})
    assert no_token.returncode == 3 and "Missing authentication token" in no_token.stderr
    wrong = biomed("jobs", "list", "--address", url, extra_env={"RAY_AUTH_TOKEN": "not-the-token-" * 3})
    assert wrong.returncode == 3 and "Invalid authentication token" in wrong.stderr
    unreachable = biomed("submit", spec, "--address", "http://127.0.0.1:9", "--storage-path", str(head["storage"]))
    assert unreachable.returncode == 3 and "cannot reach a Ray cluster at http://127.0.0.1:9" in unreachable.stderr

    bad = head["project"] / "bad.yaml"
    bad.write_text((head["project"] / spec).read_text() + "epochz: 3\n")
    invalid = biomed("submit", "bad.yaml", "--address", url)
    assert invalid.returncode == 2 and "epochz: unknown key" in invalid.stderr

    too_big = _spec(head, "too_big.yaml", name="planted-big", scaling={"num_workers": 3, "cpus_per_worker": 1})
    lacking = biomed("submit", too_big, "--address", url, "--storage-path", str(head["storage"]))
    assert lacking.returncode == 2 and f"scaling.num_workers=3: the cluster at {url} holds at most 2 workers" in lacking.stderr
    gpu = _spec(head, "gpu.yaml", name="planted-gpu", scaling={"num_workers": 1, "use_gpu": True})
    no_gpu = biomed("submit", gpu, "--address", url, "--storage-path", str(head["storage"]))
    assert no_gpu.returncode == 2 and "scaling.use_gpu is true but the cluster" in no_gpu.stderr and "has no GPU nodes" in no_gpu.stderr

    # Against the launcher file's node types (what the autoscaler could add), not the live nodes.
    cluster_yaml = str(Path(__file__).resolve().parents[1] / "cluster.yaml")
    huge = _spec(head, "huge.yaml", name="planted-huge", scaling={"num_workers": 1, "use_gpu": True, "gpus_per_worker": 16})
    too_many_gpus = biomed("submit", huge, "--address", url, "--storage-path", str(head["storage"]), "--cluster-config", cluster_yaml)
    assert too_many_gpus.returncode == 2 and "scaling.gpus_per_worker=16: the largest node of cluster config" in too_many_gpus.stderr

    no_tune = biomed("submit", spec, "--tune", "--address", url, "--storage-path", str(head["storage"]))
    assert no_tune.returncode == 2 and "needs a tune: section" in no_tune.stderr

    assert _job_ids(head) == before


def test_serve_shutdown_leaves_a_cluster_up_head_alone(tmp_path, monkeypatch):
    """`down` and `serve shutdown` stop only the head their own command started."""
    from cluster import local_head

    monkeypatch.setenv("BIOMED_HOME", str(tmp_path))
    # A stand-in process in its own session, recorded as a head `cluster up` started.
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (tmp_path / local_head.STATE_FILE).write_text(json.dumps({"address": "127.0.0.1:1", "dashboard_url": "http://127.0.0.1:2", "pid": proc.pid, "started_by": "cluster"}))
    try:
        assert local_head.stop_head(only_started_by="serve") is False
        assert proc.poll() is None
        assert local_head.stop_head(only_started_by="cluster") is True
        proc.wait(timeout=15)  # stop_head already reaped it: gone, not a zombie
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)
        assert local_head.read_head() is None
    finally:
        if proc.poll() is None:
            proc.kill()
