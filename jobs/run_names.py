"""What a run's name hashes: the resolved spec in the layout of version 0.1.

Before the family folders, every job spec had every family's fields (a text spec carried
`model.kmer_size: 6`). A run's name is a hash of its spec, and a rerun of an unchanged spec must
find its run folder, so the hash is taken over that layout: each field 0.1 had, at its value or,
where the family's section has no such field, at 0.1's default; and each newer field only when it
is not at its default, so that adding a field later renames no existing run.
tests/test_run_names.py checks this against the payloads 0.1 hashed for every shipped config.
"""

from __future__ import annotations

import copy
import hashlib
import json

# The 0.1 defaults of the fields that only some families' sections have now.
V1_LAYOUT: dict = {
    "data": {
        "text_column": "text", "label_column": "label", "numeric_columns": [], "categorical_columns": [], "time_column": None, "event_column": None,
        "canonicalize_smiles": True,
        "images": {"column": "image", "window_center": None, "window_width": None, "frame": 0, "max_bytes": 64 * 2**20, "max_pixels": 40_000_000, "min_side": 16},
    },
    "model": {
        "kmer_size": 6, "kmer_stride": 1, "pooling": None, "hidden_sizes": None, "depth": None, "hidden_size": None, "aggregation": None, "batch_norm": None,
        "ffn_hidden_size": None, "ffn_num_layers": None, "image_size": None, "molecule_features": "none",
    },
    "training": {"augment_strength": 0.0},
}
# Every field 0.1 had, by section ("" is the top level): these are always hashed.
V1_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset({"checkpointing", "data", "model", "name", "registry_storage_path", "scaling", "storage_path", "task", "training"}),
    "checkpointing": frozenset({"eval_every_n_steps", "every_n_steps", "metric", "mode", "num_to_keep"}),
    "data": frozenset({
        "baseline_max_rows", "canonicalize_smiles", "categorical_columns", "event_column", "images", "in_memory_max_rows", "invalid_inputs", "label_column",
        "numeric_columns", "shuffle_buffer_rows", "split", "split_seed", "streaming", "test_path", "text_column", "time_column", "train_path",
        "validation_fraction", "validation_path",
    }),
    "data.images": frozenset({"column", "frame", "max_bytes", "max_pixels", "min_side", "window_center", "window_width"}),
    "model": frozenset({
        "aggregation", "backbone", "batch_norm", "depth", "ffn_hidden_size", "ffn_num_layers", "hidden_size", "hidden_sizes", "image_size", "kmer_size",
        "kmer_stride", "molecule_features", "path", "pooling", "pretrained",
    }),
    "scaling": frozenset({"cpus_per_worker", "gpus_per_worker", "num_workers", "placement_strategy", "resize_check_interval_s", "use_gpu"}),
    "task": frozenset({"labels", "name"}),
    "training": frozenset({
        "augment_strength", "batch_size_per_worker", "class_weighting", "dropout", "epochs", "eval_batch_size", "gradient_accumulation_steps",
        "group_by_length", "head_learning_rate", "learning_rate", "max_grad_norm", "max_seq_length", "precision", "seed", "warmup_ratio", "weight_decay",
    }),
}
# Sections that are not part of what is trained: failure handling, the search, the serving settings.
UNHASHED = {"failure", "tune", "serve"}


def _default_json(model_class, key: str):
    field = model_class.model_fields[key]
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else json.loads(json.dumps(value, default=list))


def _overlay(layout: dict, values: dict, model, where: str) -> dict:
    out = copy.deepcopy(layout)
    v1 = V1_FIELDS.get(where, frozenset())
    for key, value in values.items():
        sub = getattr(model, key, None)
        if isinstance(value, dict) and hasattr(sub, "model_dump"):
            nested = _overlay(layout.get(key, {}), value, sub, f"{where}.{key}".lstrip("."))
            if key in v1 or nested:  # a newer section left at its defaults adds nothing
                out[key] = nested
        elif key in v1 or value != _default_json(type(model), key):
            out[key] = value
    return out


def hash_payload(spec) -> dict:
    """The resolved spec as 0.1 laid it out (see the module doc)."""
    return _overlay(V1_LAYOUT, spec.model_dump(mode="json", exclude=UNHASHED), spec, "")


def spec_hash(spec) -> str:
    """sha256 of the settings that change what is trained (failure handling and the search and
    serve sections excluded: a trial's spec has its sampled values written into `training`)."""
    return hashlib.sha256(json.dumps(hash_payload(spec), sort_keys=True).encode()).hexdigest()
