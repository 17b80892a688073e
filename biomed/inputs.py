"""Input validation per family, shared by data loading (training) and serving (requests).

A validator takes the raw inputs and returns them normalised (upper-case residues, canonical
SMILES, typed feature rows) or raises InvalidInputs naming each bad input and why. The same code
checks a training file and a request body, so what trains is what serves.
"""

from __future__ import annotations

import math
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


def _raise_if(problems: list[tuple[int, str]]) -> None:
    if problems:
        raise InvalidInputs(problems[:MAX_REPORTED], total=len(problems))


@dataclass(frozen=True)
class TextValidator:
    kind: str = "text"

    def validate(self, values: list) -> list[str]:
        problems = [(i, "not a string") for i, v in enumerate(values) if not isinstance(v, str)]
        problems += [(i, "empty or whitespace") for i, v in enumerate(values) if isinstance(v, str) and not v.strip()]
        _raise_if(sorted(problems))
        return list(values)


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
        _raise_if(problems)
        return out


DNA_ALPHABET = "ACGTN"
# The 20 standard amino acids plus X (unknown residue; the tokenizer maps it to [UNK]).
PROTEIN_ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"


@dataclass(frozen=True)
class SmilesValidator:
    """SMILES that RDKit parses; optionally rewritten in RDKit's canonical form."""

    kind: str = "smiles"
    canonicalize: bool = True

    def validate(self, values: list) -> list[str]:
        from biomed.molecules import parse_smiles

        problems, out = [], []
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                problems.append((i, "empty or not a string"))
                continue
            canonical, error = parse_smiles(value.strip())
            if error:
                problems.append((i, error))
            out.append(canonical if self.canonicalize else value.strip())
        _raise_if(problems)
        return out


@dataclass(frozen=True)
class TabularValidator:
    """Rows as {feature: value}: every numeric feature a finite number (None or NaN counts as
    missing and is imputed), every categorical feature a string, int or bool; no unknown keys."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    kind: str = "tabular"

    def validate(self, values: list) -> list[dict]:
        expected = set(self.numeric) | set(self.categorical)
        problems, out = [], []
        for i, row in enumerate(values):
            if not isinstance(row, dict):
                problems.append((i, f"expected an object of features, got {type(row).__name__}"))
                continue
            unknown = sorted(set(row) - expected)
            missing = sorted(expected - set(row))
            if unknown:
                problems.append((i, f"unknown features {unknown}; expected {sorted(expected)}"))
            if missing:
                problems.append((i, f"missing features {missing}"))
            clean = {}
            for name in self.numeric:
                value = row.get(name)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    clean[name] = None
                elif isinstance(value, bool) or not isinstance(value, int | float) or math.isinf(value):
                    problems.append((i, f"feature {name!r} must be a finite number, got {value!r}"))
                else:
                    clean[name] = float(value)
            for name in self.categorical:
                value = row.get(name)
                if value is None:
                    clean[name] = None
                elif not isinstance(value, str | int | bool):
                    problems.append((i, f"feature {name!r} must be a category (string), got {value!r}"))
                else:
                    clean[name] = str(value)
            out.append(clean)
        _raise_if(problems)
        return out


def sequence_validator(kind: str, *, min_length: int = 1, canonicalize: bool = True) -> InputValidator:
    """The validator of a sequence input kind: text, dna, protein or smiles."""
    if kind == "text":
        return TextValidator()
    if kind == "dna":
        return AlphabetValidator(kind="dna", alphabet=DNA_ALPHABET, min_length=min_length)
    if kind == "protein":
        return AlphabetValidator(kind="protein", alphabet=PROTEIN_ALPHABET, min_length=min_length)
    if kind == "smiles":
        return SmilesValidator(canonicalize=canonicalize)
    raise ValueError(f"unknown sequence input kind {kind!r}")


def validator_to_dict(validator: InputValidator) -> dict:
    """Plain JSON for biomed.json, so a served checkpoint checks requests as training did."""
    from dataclasses import asdict

    return validator.to_dict() if hasattr(validator, "to_dict") else asdict(validator)


def validator_from_dict(payload: dict) -> InputValidator:
    kind = payload["kind"]
    if kind == "text":
        return TextValidator()
    if kind in ("dna", "protein"):
        return AlphabetValidator(kind=kind, alphabet=payload["alphabet"], min_length=payload.get("min_length", 1))
    if kind == "smiles":
        return SmilesValidator(canonicalize=payload.get("canonicalize", True))
    if kind == "tabular":
        return TabularValidator(numeric=tuple(payload["numeric"]), categorical=tuple(payload["categorical"]))
    raise ValueError(f"unknown input kind {kind!r} in checkpoint metadata")
