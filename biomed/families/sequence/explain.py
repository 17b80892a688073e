"""Layer Integrated Gradients for the BERT families: token attributions on the word-embedding
layer, against a reference where every non-special token is [PAD] (the model's padding id;
[CLS] and [SEP] stay). Each family then maps the tokens' offsets in the string its tokenizer
read (k-mers, spaced residues, canonical SMILES) back onto the user's own string."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from biomed.explain import STEPS_PER_PASS, Explained, explained_output


@dataclass
class TokenAttributions:
    """One input's token scores, with what the families need to map and delete them."""

    sequences: object  # the SequenceEncoder (its k-mer cut)
    prepared: str  # the string the tokenizer read
    scores: np.ndarray  # per token, special tokens included
    offsets: list[tuple[int, int]]  # per token, into `prepared`; (0, 0) for special tokens
    delta: float
    units: np.ndarray  # positions of the non-special tokens (what deletion removes)
    forward: object  # ids → the explained output
    input_ids: torch.Tensor
    pad_id: int

    def output_without(self, units) -> float:
        """The explained output with the given units (indices into `units`) set to [PAD]."""
        ids = self.input_ids.clone()
        ids[0, self.units[np.asarray(units, dtype=np.int64)]] = self.pad_id
        with torch.no_grad():
            return float(self.forward(ids)[0])

    def explained(self, attributions: list[dict]) -> Explained:
        payload = {"attributions": attributions, "convergence_delta": self.delta, "method": "layer_integrated_gradients"}
        return Explained(payload, self.scores[self.units], self.output_without)


def embedding_layer(model):
    """The layer attributions are taken at: the whole embedding block (word, position and type
    embeddings, then LayerNorm), as Captum's BERT tutorial does; else the word embeddings."""
    return getattr(model.base_model, "embeddings", None) or model.get_input_embeddings()


def sequence_encoder(encoder):
    """The SequenceEncoder inside a token encoder (a featured encoder wraps one)."""
    return getattr(encoder, "tokens", encoder).sequences


def token_attributions(predictor, validated: str, *, target_index: int, n_steps: int) -> TokenAttributions:
    """LIG token scores of one validated input for the output `target_index`."""
    from captum.attr import LayerIntegratedGradients

    model, sequences = predictor.model, sequence_encoder(predictor.encoder)
    prepared = sequences.prepare([validated])[0]
    tokenizer = sequences.tokenizer
    offsets = tokenizer(prepared, truncation=True, max_length=predictor.max_length, return_offsets_mapping=True)["offset_mapping"]
    batch = predictor.encoder.encode([validated], max_length=predictor.max_length).batch(np.arange(1))
    input_ids, mask = batch["input_ids"].to(predictor.device), batch["attention_mask"].to(predictor.device)
    features = batch["features"].to(predictor.device) if "features" in batch else None
    special = torch.isin(input_ids, torch.tensor(sorted(set(tokenizer.all_special_ids)), device=input_ids.device))
    reference = torch.where(special, input_ids, torch.full_like(input_ids, tokenizer.pad_token_id))

    def forward(ids):
        rows = ids.shape[0]
        extra = {} if features is None else {"features": features.expand(rows, -1)}
        return explained_output(model(input_ids=ids, attention_mask=mask.expand(rows, -1), **extra).logits, target_index)

    lig = LayerIntegratedGradients(forward, embedding_layer(model))
    attributions, delta = lig.attribute(input_ids, baselines=reference, n_steps=n_steps, internal_batch_size=min(n_steps, STEPS_PER_PASS), return_convergence_delta=True)
    scores = attributions.sum(-1)[0].detach().cpu().numpy()
    units = np.flatnonzero(~special[0].cpu().numpy())
    return TokenAttributions(sequences, prepared, scores, [tuple(o) for o in offsets], float(delta.abs().max()), units, forward, input_ids, tokenizer.pad_token_id)


def spans_of(tokens: TokenAttributions, raw: str, *, shift: int = 0) -> list[dict]:
    """Token scores as spans of `raw` (the prepared string is the user's own, less `shift`
    characters of leading whitespace): one entry per non-special token (words, subwords)."""
    out = []
    for i in tokens.units:
        start, end = tokens.offsets[i]
        out.append({"span": [start + shift, end + shift], "text": raw[start + shift : end + shift], "score": float(tokens.scores[i])})
    return out


def per_position(tokens: TokenAttributions, positions: list[tuple[int, int]], raw: str, *, shift: int) -> list[dict]:
    """Token scores spread evenly over the characters of the sequence each covers
    (`positions[j]`: the span, in the validated sequence, of non-special token j) and summed per
    character: one entry per base or residue, as a span of `raw` (0 past the model's token limit)."""
    scores = np.zeros(len(raw.strip()))
    for j, i in enumerate(tokens.units):
        start, end = positions[j]
        if end > start:
            scores[start:end] += tokens.scores[i] / (end - start)
    return [{"span": [p + shift, p + 1 + shift], "text": raw[p + shift], "score": float(s)} for p, s in enumerate(scores)]


def strip_shift(raw: str) -> int:
    """How many characters of leading whitespace the input check stripped."""
    return len(raw) - len(raw.lstrip())
