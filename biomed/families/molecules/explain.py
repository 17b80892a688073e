"""Molecule explanations as atoms and bonds of the user's own SMILES.

The model reads the validated SMILES (RDKit's canonical form by default), whose atoms come in
another order than the user's. RDKit records, when it writes a canonical SMILES, which input
atom it wrote at each position (`_smilesAtomOutputOrder`); parsing a SMILES numbers atoms in the
order they appear. So canonical atom k is the user's atom `order[k]`, and every atom and bond
maps back to characters of the user's string.

- SMILES transformer: each token belongs to an atom (an atom token) or to the bond it
  introduces (bond symbols, ring-closure digits, and the branch parentheses before the bond);
  the score of a bond is the sum of its tokens' ('.' belongs to no bond: its score is dropped).
- `dmpnn`: integrated gradients on the atom features and the directed bond features against
  the same graph with every atom and bond made average (each feature row replaced by the
  molecule's mean row: the topology stays, what the atoms and bonds are goes; all-zero rows, a
  graph of "no element", put credit on every atom for existing); an atom's score is its row's
  sum, a bond's the sum over its two directions.

Entries: `{"atom": i, "span": [start, end], "text": "Cl", "score"}` and `{"bond": [i, j],
"span": ..., "text": "=", "score"}`, with i, j the atoms' positions in the user's SMILES
(0-based, in order of appearance). A bond's span is its symbol, or the digit closing its ring; a
bond the string leaves implicit (single, aromatic) has no characters of its own: its span is
null and its text empty.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from biomed.explain import Explained, explained_output, integrated_gradients
from biomed.families.molecules.smiles import SMILES_REGEX

BOND_SYMBOLS = set("-=#$:/\\~")
_PIECE = re.compile(SMILES_REGEX)


def pieces(smiles: str) -> list[tuple[str, int, int]]:
    """The regex pieces of a SMILES with their spans (the tokenizer's own split)."""
    return [(m.group(), m.start(), m.end()) for m in _PIECE.finditer(smiles)]


def _is_atom(piece: str) -> bool:
    return piece.startswith("[") or piece[0].isalpha() or piece == "*"


def roles(tokens: list[str]) -> list[tuple[str, object] | None]:
    """Per piece: ("atom", atom index), ("bond", (i, j)), or None (a '.', or a dangling symbol)."""
    out: list = [None] * len(tokens)
    atoms, previous, stack, pending, rings = 0, None, [], [], {}
    for t, piece in enumerate(tokens):
        if _is_atom(piece):
            if previous is not None:
                for p in pending:
                    out[p] = ("bond", (previous, atoms))
            out[t], previous, pending, atoms = ("atom", atoms), atoms, [], atoms + 1
        elif piece == "(":
            stack.append(previous)
            pending.append(t)
        elif piece == ")":
            previous = stack.pop() if stack else previous
            pending.append(t)
        elif piece in BOND_SYMBOLS:
            pending.append(t)
        elif piece[0].isdigit() or piece.startswith("%"):
            if piece in rings:
                start, opened = rings.pop(piece)
                for p in [*opened, *pending, t]:
                    out[p] = ("bond", (start, previous))
            else:
                rings[piece] = (previous, [*pending, t])
            pending = []
        else:  # '.': no bond across it
            previous, pending = None, []
    return out


def atom_order(raw: str, validated: str) -> list[int]:
    """The user's atom index of each atom of the validated SMILES."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(raw.strip())
    if Chem.MolToSmiles(mol) != validated:  # not canonicalised: the user's own order
        return list(range(mol.GetNumAtoms()))
    return [int(i) for i in mol.GetPropsAsDict(True, True)["_smilesAtomOutputOrder"]]


def user_string(raw: str, num_atoms: int) -> tuple[dict, dict]:
    """(atom index → (span, text), bond (i, j) → (span, text) of its explicit symbol) in the user's
    SMILES. Explicit hydrogens that RDKit folds into their atom ('[H]') are skipped; if the atoms
    still do not line up, atoms have no spans."""
    shift = len(raw) - len(raw.lstrip())
    found = pieces(raw.strip())
    atoms = [(p, s, e) for p, s, e in found if _is_atom(p)]
    kept = [a for a in atoms if a[0] != "[H]"] if len(atoms) != num_atoms else atoms
    if len(kept) != num_atoms:
        return {}, {}
    spans = {i: ([s + shift, e + shift], p) for i, (p, s, e) in enumerate(kept)}
    bonds = {}
    if kept is atoms:
        for (piece, s, e), role in zip(found, roles([p for p, _, _ in found])):
            # A bond's own symbol, else the digit that closes its ring.
            if role is not None and role[0] == "bond" and (piece in BOND_SYMBOLS or piece[0].isdigit() or piece[0] == "%"):
                key = tuple(sorted(role[1]))
                if key not in bonds or piece in BOND_SYMBOLS:
                    bonds[key] = ([s + shift, e + shift], piece)
    return spans, bonds


def molecule_entries(raw: str, order: list[int], atom_scores: dict[int, float], bond_scores: dict[tuple[int, int], float]) -> list[dict]:
    """Atom and bond entries of the user's SMILES from scores keyed by validated atom indices."""
    spans, symbols = user_string(raw, len(order))
    out = []
    for k, score in sorted(atom_scores.items(), key=lambda kv: order[kv[0]]):
        i = order[k]
        span, text = spans.get(i, (None, ""))
        out.append({"atom": i, "span": span, "text": text, "score": float(score)})
    for (a, b), score in bond_scores.items():
        pair = tuple(sorted((order[a], order[b])))
        span, text = symbols.get(pair, (None, ""))
        out.append({"bond": list(pair), "span": span, "text": text, "score": float(score)})
    return out


def smiles_token_entries(tokens, raw: str, validated: str) -> list[dict]:
    """A SMILES transformer's token scores as atoms and bonds of the user's SMILES."""
    by_offset = {tokens.offsets[i]: tokens.scores[i] for i in tokens.units}
    atom_scores: dict[int, float] = {}
    bond_scores: dict[tuple[int, int], float] = {}
    found = pieces(validated)
    for (piece, s, e), role in zip(found, roles([p for p, _, _ in found])):
        score = float(by_offset.get((s, e), 0.0))  # a piece past the token limit scores 0
        if role is None:
            continue
        if role[0] == "atom":
            atom_scores[role[1]] = atom_scores.get(role[1], 0.0) + score
        else:
            key = tuple(sorted(role[1]))
            bond_scores[key] = bond_scores.get(key, 0.0) + score
    return molecule_entries(raw, atom_order(raw, validated), atom_scores, bond_scores)


def graph_explanation(predictor, raw: str, validated: str, *, target_index: int, n_steps: int) -> Explained:
    """IG on a D-MPNN's atom and bond features against the molecule made of average atoms and
    bonds (each row replaced by the molecule's mean row), as atoms and bonds of the user's
    SMILES; deletion sets atom rows to that mean."""
    batch = predictor.encoder.encode([validated]).batch(np.arange(1))
    device = predictor.device
    V, E = batch["V"].to(device).float(), batch["E"].to(device).float()
    edge_index, rev = batch["edge_index"].to(device), batch["rev_edge_index"].to(device)
    features = batch["features"].to(device) if "features" in batch else None
    n_atoms, n_edges = V.shape[0], E.shape[0]

    def forward(v, e):
        # Captum stacks the interpolation steps on the first axis: k copies of the molecule, as one batched graph.
        k = v.shape[0]
        shifts = torch.arange(k, device=device)
        index = torch.cat([edge_index + s * n_atoms for s in shifts], dim=1)
        reverse = torch.cat([rev + s * n_edges for s in shifts])
        graph_index = shifts.repeat_interleave(n_atoms)
        extra = None if features is None else features.expand(k, -1)
        return explained_output(predictor.model(v.reshape(-1, V.shape[1]), e.reshape(-1, E.shape[1]), index, reverse, graph_index, extra).logits, target_index)

    inputs = (V[None], E[None])
    references = tuple(x.mean(dim=1, keepdim=True).expand_as(x) if x.shape[1] else x for x in inputs)
    (atoms, edges), delta = integrated_gradients(forward, inputs, references, n_steps=n_steps)
    atom_scores = dict(enumerate(atoms.sum(-1)))
    pairs = edge_index.cpu().numpy().T
    bond_scores: dict[tuple[int, int], float] = {}
    for (a, b), score in zip(pairs, edges.sum(-1)):
        key = (int(min(a, b)), int(max(a, b)))
        bond_scores[key] = bond_scores.get(key, 0.0) + float(score)

    def output_without(units) -> float:
        v = V.clone()
        v[np.asarray(units, dtype=np.int64)] = references[0][0, 0]
        with torch.no_grad():
            return float(forward(v[None], E[None])[0])

    entries = molecule_entries(raw, atom_order(raw, validated), atom_scores, bond_scores)
    return Explained({"attributions": entries, "convergence_delta": delta, "method": "integrated_gradients"}, atoms.sum(-1), output_without)
