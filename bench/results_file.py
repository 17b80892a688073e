"""Where a benchmark's figures go: one JSON file per run, bench/results/<bench>/<date>-<commit>.json.

History lives in these files, not in prose: the docs' benchmark page (docs/gen_pages.py) renders
the newest file of each benchmark. Each file holds the machine it ran on (cores, GPU) beside the
benchmark's own JSON line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=RESULTS.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _gpu() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 (no torch, no driver: no GPU to name)
        return None


def save(bench: str, figures: dict, *, command: str) -> Path:
    """Write one run's figures; `command` is what reproduces them. Returns the file."""
    when = dt.datetime.now(dt.timezone.utc)
    commit = _commit()
    record = {
        "bench": bench, "date": when.date().isoformat(), "time": when.isoformat(timespec="seconds"), "commit": commit,
        "command": command, "machine": {"cores": os.cpu_count(), "gpu": _gpu()}, "figures": figures,
    }
    folder = RESULTS / bench
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['date']}-{commit}.json"
    path.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    return path
