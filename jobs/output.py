"""How every `biomed` command prints its result: one JSON line under --json, else for people."""

from __future__ import annotations

import json


def emit(payload, *, as_json: bool, human) -> None:
    """Print `payload` as one JSON object on one line, or hand it to `human`."""
    if as_json:
        print(json.dumps(payload, default=str))
    else:
        human(payload)


def pretty(payload) -> None:
    print(json.dumps(payload, indent=2, default=str))
