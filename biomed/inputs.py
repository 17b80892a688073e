"""Input validation, shared by data loading (training) and serving (requests).

A validator takes the raw inputs and returns them normalised (upper-case residues, canonical
SMILES, typed feature rows) or raises InvalidInputs naming each bad input and why. The same code
checks a training file and a request body, so what trains is what serves. Each family has its
own (biomed/families/); the alphabet check here serves DNA and protein alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

MAX_REPORTED = 10


class InvalidInputs(ValueError):
    """Inputs that fail validation: `problems` are (index, message) pairs, index 0-based."""

    def __init__(self, problems: list[tuple[int, str]], *, total: int | None = None):
        self.problems = problems
        self.total = total if total is not None else len(problems)
        shown = "; ".join(f"row {i}: {m}" for i, m in problems[:MAX_REPORTED])
        more = f" (and {self.total - MAX_REPORTED} more)" if self.total > MAX_REPORTED else ""
        super().__init__(f"{self.total} invalid inputs: {shown}{more}")


class InputValidator(Protocol):
    kind: str

    def validate(self, values: list) -> list: ...


def raise_if(problems: list[tuple[int, str]]) -> None:
    if problems:
        raise InvalidInputs(problems[:MAX_REPORTED], total=len(problems))


def validator_to_dict(validator: InputValidator) -> dict:
    """Plain JSON for biomed.json, so a served checkpoint checks requests as training did."""
    from dataclasses import asdict

    return validator.to_dict() if hasattr(validator, "to_dict") else asdict(validator)


@dataclass(frozen=True)
class AlphabetValidator:
    """Sequences over a fixed alphabet, case-insensitive; the first bad character of each row
    is reported with its 0-based position."""

    kind: str
    alphabet: str
    min_length: int = 1

    def validate(self, values: list) -> list[str]:
        bad = re.compile(f"[^{re.escape(self.alphabet)}]")
        problems, out = [], []
        for i, value in enumerate(values):
            if not isinstance(value, str):
                problems.append((i, f"not a string ({type(value).__name__})"))
                continue
            seq = value.strip().upper()
            hit = bad.search(seq)
            if hit:
                problems.append((i, f"character {value.strip()[hit.start()]!r} at position {hit.start()} is not in the {self.kind} alphabet {self.alphabet}"))
            elif len(seq) < self.min_length:
                problems.append((i, f"sequence of length {len(seq)} is shorter than {self.min_length}"))
            out.append(seq)
        raise_if(problems)
        return out

    @classmethod
    def from_dict(cls, payload: dict) -> AlphabetValidator:
        return cls(kind=payload["kind"], alphabet=payload["alphabet"], min_length=payload.get("min_length", 1))
