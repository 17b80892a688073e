"""The benchmark page's figures, from the newest saved run of each benchmark (bench/results/).

Each benchmark writes one JSON file per run (bench/results_file.py); this renders the newest of
each, with the command that reproduces it and the machine it ran on. Earlier runs stay in
their files, not in the page. `python scripts/bench_table.py` prints the Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def newest() -> dict[str, dict]:
    """The newest saved run of each benchmark, by its date then file name."""
    out = {}
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir()) if RESULTS.is_dir() else []:
        runs = sorted(folder.glob("*.json"), key=lambda p: (json.loads(p.read_text()).get("time") or json.loads(p.read_text())["date"], p.name))
        if runs:
            out[folder.name] = json.loads(runs[-1].read_text()) | {"runs": len(runs)}
    return out


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, separators=(", ", ": ")).replace("|", "\\|") + "`"
    return str(value).replace("|", "\\|")


def render() -> str:
    parts = []
    for bench, run in newest().items():
        machine = run.get("machine", {})
        where = f"{machine.get('cores')} cores" + (f", {machine['gpu']}" if machine.get("gpu") else ", no GPU")
        parts.append(f"### `{bench}`\n")
        parts.append(f"`{run['command']}` — {run['date']}, commit `{run['commit']}`, {where}; {run['runs']} saved run(s) in `bench/results/{bench}/`.\n")
        if run.get("source"):
            parts.append(f"*{run['source']}*\n")
        figures = run["figures"]
        parts.append("| figure | value |\n|---|---|\n" + "\n".join(f"| {key} | {_value(value)} |" for key, value in figures.items()) + "\n")
    return "\n".join(parts) if parts else "No saved benchmark run yet.\n"


if __name__ == "__main__":
    print(render())
