"""Tabular and survival explanations: integrated gradients per original column.

The reference is the training mean: every standardised numeric feature at 0 and each one-hot
column at its category's share of the training rows (checkpoints from before 0.2 recorded no
shares: there, no category). A categorical column's score is the sum over its one-hot group. Survival models
explain their log-risk score.
"""

from __future__ import annotations

import numpy as np
import torch

from biomed.explain import Explained, explained_output, integrated_gradients


def column_groups(preprocessor) -> list[tuple[str, list[int]]]:
    """(original column, its positions among the model's features), numeric columns first."""
    groups = [(name, [j]) for j, name in enumerate(preprocessor.numeric)]
    offset = len(preprocessor.numeric)
    for name, categories in zip(preprocessor.categorical, preprocessor.categories):
        groups.append((name, list(range(offset, offset + len(categories)))))
        offset += len(categories)
    return groups


def tabular_explanation(predictor, validated: dict, *, target_index: int, n_steps: int) -> Explained:
    preprocessor = predictor.encoder.preprocessor
    x = torch.from_numpy(preprocessor.transform([validated])).to(predictor.device)

    def forward(features):
        return explained_output(predictor.model(features=features).logits, target_index)

    reference = torch.from_numpy(preprocessor.training_mean())[None].to(predictor.device)
    (scores,), delta = integrated_gradients(forward, (x,), (reference,), n_steps=n_steps)
    groups = column_groups(preprocessor)
    entries = [{"feature": name, "value": validated[name], "score": float(scores[columns].sum())} for name, columns in groups]

    def output_without(units) -> float:
        masked = x.clone()
        for u in np.asarray(units, dtype=np.int64):
            masked[0, groups[u][1]] = reference[0, groups[u][1]]
        with torch.no_grad():
            return float(forward(masked)[0])

    return Explained({"attributions": entries, "convergence_delta": delta, "method": "integrated_gradients"}, np.array([e["score"] for e in entries]), output_without)
