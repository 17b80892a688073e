"""SMILES as strings: the RDKit check (canonical form optional) and the atom-level tokenizer.

The tokenizer splits a SMILES with the atom-level regex of Schwaller et al. (2019) and looks the
pieces up in a word-level vocabulary learned from the training split (sorted, not
frequency-ranked, so every DDP worker that builds it from the same split gets the same ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from biomed.families.sequence.tokens import word_level
from biomed.inputs import raise_if

SMILES_REGEX = r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"


@dataclass(frozen=True)
class SmilesValidator:
    """SMILES that RDKit parses; optionally rewritten in RDKit's canonical form."""

    kind: str = "smiles"
    canonicalize: bool = True

    def validate(self, values: list) -> list[str]:
        from biomed.families.molecules.chem import parse_smiles

        problems, out = [], []
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                problems.append((i, "empty or not a string"))
                continue
            canonical, error = parse_smiles(value.strip())
            if error:
                problems.append((i, error))
            out.append(canonical if self.canonicalize else value.strip())
        raise_if(problems)
        return out

    @classmethod
    def from_dict(cls, payload: dict) -> SmilesValidator:
        return cls(canonicalize=payload.get("canonicalize", True))


def smiles_split():
    """The atom-level regex pre-tokenizer."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Split(Regex(SMILES_REGEX), behavior="isolated")


def smiles_pieces(smiles: list[str]) -> set[str]:
    """The atoms and bonds (regex pieces) the SMILES strings are made of."""
    split = smiles_split()
    return {piece for s in smiles for piece, _ in split.pre_tokenize_str(s)}


def smiles_tokenizer(train_smiles: list[str] = (), *, pieces: list[str] | None = None):
    """Regex atom-level pre-tokenizer; vocabulary = the atoms and bonds seen in training (or
    the `pieces` a streamed pass collected)."""
    pieces = sorted(set(pieces) if pieces is not None else smiles_pieces(list(train_smiles)))
    return word_level(pieces, pre_tokenizer=smiles_split())


@dataclass
class SmilesVocabulary:
    """The SMILES pieces of a training split, collected one unit of rows at a time."""

    pieces: set = field(default_factory=set)

    def update(self, examples) -> None:
        self.pieces |= smiles_pieces(examples.inputs)

    def result(self) -> dict:
        return {"pieces": sorted(self.pieces)}
