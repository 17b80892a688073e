"""Run hooks for tests (jobs/lifecycle.py's RunHooks). In a module of their own, importable as
`tests.run_hooks`, because Ray Train's controller unpickles them in its own process."""

from __future__ import annotations

import json
from pathlib import Path


class Recorder:
    """A run hook that appends each event to a JSON-lines file (reports come from Ray Train's
    controller, another process, so the file is how the test sees them)."""

    def __init__(self, path: Path):
        self.path = path

    def _write(self, event: str, run, **more) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"event": event, "kind": run.kind, "run_name": run.run_name, **more}) + "\n")

    def on_start(self, run) -> None:
        self._write("start", run)

    def on_report(self, run, metrics: dict) -> None:
        self._write("report", run, epoch=metrics.get("epoch"), accuracy=metrics.get("val_accuracy"))

    def on_register(self, run, entry: dict) -> None:
        self._write("register", run, version=entry["version"])

    def on_end(self, run, summary, error) -> None:
        self._write("end", run, failed=error is not None, version=(summary or {}).get("registered", {}).get("version"))


class Broken:
    """A hook that fails: the run must go on (a tracking outage never fails training)."""

    def on_start(self, run) -> None:
        raise RuntimeError("tracking server unreachable")

    def on_report(self, run, metrics) -> None:
        raise RuntimeError("tracking server unreachable")
