"""What `biomed submit` costs over running `biomed train` directly on the same cluster.

Starts a local Ray head on 127.0.0.1 (token auth, its own temp dir), writes a tiny planted-signal
project, then alternates, `--repeats` times each:
  direct: `biomed train spec.yaml --address <head>` (a driver on this machine joins the head)
  submit: `biomed submit spec.yaml --address <dashboard>`, then polls the Jobs API for RUNNING
          and SUCCEEDED (the driver runs on the head, in the job's runtime env)
Each run writes to its own storage path so nothing resumes in place. Prints the medians and the
ratio submit-to-done / direct-to-done; the last line is one JSON object with every figure.

    python bench/submit_overhead.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import save  # noqa: E402


def _biomed(args: list[str], *, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"biomed {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def _project(work: Path) -> Path:
    """A folder with the planted data and a tiny spec, as a user's project."""
    import yaml

    from biomed.families.text.planted import write_planted_text

    project = work / "project"
    (project / "data").mkdir(parents=True)
    write_planted_text(project / "data" / "train.parquet", 320, seed=1)
    write_planted_text(project / "data" / "test.parquet", 100, seed=2)
    spec = {
        "name": "bench-submit",
        "task": {"name": "text_classification"},
        "data": {"train_path": "data/train.parquet", "test_path": "data/test.parquet"},
        "model": {"backbone": "tiny-bert"},
        "training": {"epochs": 2, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 40},
        "scaling": {"num_workers": 1},
    }
    (project / "spec.yaml").write_text(yaml.safe_dump(spec))
    return project


def _one_repeat(i: int, *, client, up: dict, project: Path, work: Path, env: dict, figures: dict) -> None:
    """`biomed train --address` then `biomed submit` of the same spec, timed."""
    start = time.perf_counter()
    _biomed(["train", "spec.yaml", "--address", up["address"], "--storage-path", str(work / f"direct{i}"), "--json"], cwd=project, env=env)
    figures["direct_done_s"].append(time.perf_counter() - start)

    start = time.perf_counter()
    out = _biomed(["submit", "spec.yaml", "--address", up["dashboard_url"], "--storage-path", str(work / f"submit{i}"), "--json"], cwd=project, env=env)
    figures["submit_returned_s"].append(time.perf_counter() - start)
    job_id = json.loads(out.stdout.strip().splitlines()[-1])["submission_id"]
    running = None
    while True:
        status = str(client.get_job_status(job_id).value)
        if status == "RUNNING" and running is None:
            running = time.perf_counter() - start
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(0.1)
    if status != "SUCCEEDED":
        raise SystemExit(f"job {job_id} ended {status}:\n{client.get_job_logs(job_id)[-3000:]}")
    figures["submit_running_s"].append(running if running is not None else float("nan"))
    figures["submit_done_s"].append(time.perf_counter() - start)
    print(f"repeat {i + 1}: direct {figures['direct_done_s'][-1]:.1f} s, submit returned {figures['submit_returned_s'][-1]:.1f} s, running {figures['submit_running_s'][-1]:.1f} s, done {figures['submit_done_s'][-1]:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    # The head has token auth on; Ray reads this once, when it is first imported.
    os.environ["RAY_AUTH_MODE"] = "token"

    work = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    env = {**os.environ, "BIOMED_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    project = _project(work)
    up = json.loads(_biomed(["cluster", "up", "--local", "--json"], cwd=project, env=env).stdout.strip().splitlines()[-1])
    figures: dict[str, list[float]] = {"direct_done_s": [], "submit_returned_s": [], "submit_running_s": [], "submit_done_s": []}
    try:
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(up["dashboard_url"])
        for i in range(args.repeats):
            _one_repeat(i, client=client, up=up, project=project, work=work, env=env, figures=figures)
    finally:
        _biomed(["cluster", "down", "--json"], cwd=project, env=env)

    medians = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    result = {
        **medians,
        "ratio_submit_done_to_direct_done": round(medians["submit_done_s"] / medians["direct_done_s"], 3),
        "submit_extra_s": round(medians["submit_done_s"] - medians["direct_done_s"], 2),
        "repeats": args.repeats,
        "runs": {k: [round(x, 2) for x in v] for k, v in figures.items()},
    }
    print(f"direct train {medians['direct_done_s']:.1f} s; submit: returned {medians['submit_returned_s']:.1f} s, running {medians['submit_running_s']:.1f} s, done {medians['submit_done_s']:.1f} s")
    print(f"ratio submit/direct (to done): {result['ratio_submit_done_to_direct_done']:.2f}x ({result['submit_extra_s']:+.1f} s)")
    save("submit_overhead", result, command=" ".join(["python", *sys.argv]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
