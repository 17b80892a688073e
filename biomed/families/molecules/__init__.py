"""The molecule family ("smiles"): molecules as SMILES, read by a SMILES transformer (atom-level
tokens, optionally with molecule-level features) or by chemprop's message passing over the
molecule graph (`dmpnn`); compared with Morgan fingerprints + a random forest. Validation can be
a Bemis–Murcko scaffold split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from biomed.family import Baseline, Resolution, TaskDef
from biomed.models import head_labels
from biomed.families.sequence import BertModel, SequenceData, SequenceFamily, bert_folder_type
from biomed.families.sequence.backbones import SMALL_BERT, TINY_BERT
from biomed.families.sequence.tokens import FeaturedTokenEncoder, SequenceEncoder, TokenEncoder
from biomed.families.molecules.smiles import SmilesValidator, SmilesVocabulary, smiles_split, smiles_tokenizer
from biomed.spec_sections import offering


@dataclass(frozen=True)
class DMPNNBackbone:
    """chemprop's directed message-passing network over molecule graphs (dmpnn.py); its sizes
    are spec fields (model.depth, model.hidden_size, ...), defaulting to chemprop's own."""

    description: str
    pooling: None = None  # graphs are not pooled by a BERT head
    # chemprop 2.3's CLI defaults.
    defaults: tuple[tuple[str, object], ...] = (
        ("depth", 3), ("hidden_size", 300), ("aggregation", "norm"), ("batch_norm", False), ("ffn_hidden_size", 300), ("ffn_num_layers", 1),
    )

    def tokenizer(self):
        return None


DMPNN = DMPNNBackbone(
    description="chemprop's D-MPNN (BondMessagePassing, chemprop==2.3.1) over RDKit molecule graphs, random init; depth 3, hidden 300, norm aggregation, a 300-wide head by default (chemprop's CLI defaults)",
)
BACKBONES = {"tiny-bert": TINY_BERT, "small-bert": SMALL_BERT, "dmpnn": DMPNN}
# The dmpnn backbone's own fields (dmpnn.py), passed to its config.
GRAPH_FIELDS = tuple(name for name, _ in DMPNN.defaults)


class MoleculeData(SequenceData):
    canonicalize_smiles: bool = Field(default=True, description="Molecule tasks: rewrite each SMILES in RDKit's canonical form before tokenizing (training and serving alike).")


class MoleculeModelFields(BertModel):
    depth: int | None = Field(default=None, ge=1, le=12, description="dmpnn backbone: message-passing steps (chemprop's --depth). Omitted: 3.")
    hidden_size: int | None = Field(default=None, ge=8, le=4096, description="dmpnn backbone: width of the bond messages (chemprop's --message-hidden-dim). Omitted: 300.")
    aggregation: Literal["mean", "sum", "norm"] | None = Field(
        default=None, description="dmpnn backbone: how atom states become the molecule vector: mean, sum, or norm (the sum divided by 100, chemprop's default). Omitted: norm.",
    )
    batch_norm: bool | None = Field(default=None, description="dmpnn backbone: batch norm over the molecule vector before the head (chemprop's --batch-norm). Omitted: off.")
    ffn_hidden_size: int | None = Field(default=None, ge=1, le=8192, description="dmpnn backbone: width of the head's hidden layers (chemprop's --ffn-hidden-dim). Omitted: 300.")
    ffn_num_layers: int | None = Field(default=None, ge=0, le=8, description="dmpnn backbone: hidden layers in the head (chemprop's --ffn-num-layers). Omitted: 1.")
    molecule_features: Literal["none", "morgan_count", "rdkit_2d"] = Field(
        default="none",
        description="Molecule tasks (dmpnn or a BERT backbone): molecule-level features concatenated before the head: none; morgan_count (radius-2 Morgan counts, 2048 columns); rdkit_2d (RDKit's 2D descriptors, about 217). Computed with chemprop's featurizers, standardised on the training split and saved with the checkpoint, so serving computes them as training did.",
    )

    @model_validator(mode="after")
    def _graph_fields(self):
        given = [k for k in GRAPH_FIELDS if getattr(self, k) is not None]
        if given and self.backbone != "dmpnn":
            raise ValueError(f"model.{given[0]} sets the 'dmpnn' backbone only")
        return self

    @property
    def graph(self) -> bool:
        """Whether the model reads molecule graphs (dmpnn), not SMILES tokens."""
        return self.backbone == "dmpnn"


def morgan_random_forest(train_x, train_y, test_x, ctx):
    """Morgan fingerprints (radius 2, 2048 bits) + a 500-tree random forest."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from biomed.baselines import fit_proba
    from biomed.families.molecules.chem import morgan_fingerprints

    x_train, x_test = morgan_fingerprints(train_x), morgan_fingerprints(test_x)
    if not ctx.target.has_labels:
        forest = RandomForestRegressor(n_estimators=500, n_jobs=-1, random_state=ctx.seed).fit(x_train, train_y)
        return forest.predict(x_test)
    forest = RandomForestClassifier(n_estimators=500, n_jobs=-1, class_weight="balanced", random_state=ctx.seed)
    return fit_proba(forest, x_train, train_y, x_test, ctx.num_classes)


def _planted(num_rows: int, seed: int):
    from biomed.families.molecules.planted import planted_smiles_table

    spec = {"task": {"name": "molecule_regression"}, "data": {"text_column": "smiles", "label_column": "value", "split": "scaffold"}, "model": {"backbone": "tiny-bert"}}
    return planted_smiles_table(num_rows, seed=seed), spec


@dataclass(frozen=True, eq=False)
class MoleculeFamily(SequenceFamily):
    def resolve(self, spec, *, backbone_metadata: dict | None) -> Resolution:
        m = spec.model
        if m.path is not None and m.molecule_features != "none" and bert_folder_type(m.path) != "bert":
            raise ValueError(f"molecule_features {m.molecule_features!r} needs a BERT model folder; {m.path!r} holds model_type {bert_folder_type(m.path)!r}")
        if not m.graph:
            return super().resolve(spec, backbone_metadata=backbone_metadata)
        # A D-MPNN trains at chemprop's peak rate (1e-3), not a transformer's; and its batches
        # have no padding, so grouping them by size would only correlate batches with the target.
        training = {key: value for key, value in (("learning_rate", 1e-3), ("group_by_length", False)) if key not in spec.training.model_fields_set}
        model = {key: value for key, value in DMPNN.defaults if getattr(m, key) is None}
        return Resolution(updates={"model": model, "training": training})

    def check_options(self, spec) -> dict:
        return {"canonicalize": spec.data.canonicalize_smiles}

    def corpus_check_options(self, spec) -> dict:
        return {"canonicalize": spec.corpus.canonicalize_smiles}

    def in_memory_reason(self, spec) -> str | None:
        if spec.model.molecule_features != "none":
            return f"model.molecule_features {spec.model.molecule_features!r} are standardised on the training split in memory"
        return None

    def hold_out(self, method, inputs, fraction):
        if method != "scaffold":
            return None
        from biomed.families.molecules.chem import scaffold_split

        return scaffold_split(inputs, fraction=fraction)

    def backbone_tokenizer(self, job):
        if job.spec.model.graph:
            return None
        return super().backbone_tokenizer(job)

    def encoder_statistics(self, job):
        # A graph encoder (dmpnn) fits no vocabulary, so a streamed pass collects none for it.
        if job.spec.model.graph or self.backbone_tokenizer(job) is not None:
            return None
        return SmilesVocabulary()

    def build_encoder(self, job, *, train_inputs: list, statistics: dict | None):
        features = job.spec.model.molecule_features
        if job.spec.model.graph:
            from biomed.families.molecules.graphs import GraphEncoder

            return GraphEncoder.fit(list(train_inputs), molecule_features=features)
        tokens = super().build_encoder(job, train_inputs=train_inputs, statistics=statistics)
        if features == "none":
            return tokens
        from biomed.families.molecules.graphs import MoleculeFeatures

        if not train_inputs:
            raise ValueError(f"molecule_features {features!r} need SMILES inputs held in memory (the training split fits them)")
        return FeaturedTokenEncoder(tokens, MoleculeFeatures.fit(features, list(train_inputs)))

    def load_encoder(self, directory, metadata: dict):
        encoder = metadata["encoder"]
        if encoder.get("kind") == "molecule_graph":
            from biomed.families.molecules.graphs import GraphEncoder

            return GraphEncoder.from_metadata(encoder)
        tokens = TokenEncoder(SequenceEncoder.load(directory, encoder))
        if encoder.get("molecule_features") is None:
            return tokens
        from biomed.families.molecules.graphs import MoleculeFeatures

        return FeaturedTokenEncoder(tokens, MoleculeFeatures.from_dict(encoder["molecule_features"]))

    def build_model(self, job, *, encoder, labels: list[str], num_outputs: int):
        m = job.spec.model
        if not m.graph:
            return super().build_model(job, encoder=encoder, labels=labels, num_outputs=num_outputs)
        from biomed.families.molecules.dmpnn import BiomedDMPNNConfig, BiomedDMPNNForSequenceClassification

        graph = {**{k: getattr(m, k) for k in GRAPH_FIELDS}, "atom_fdim": encoder.atom_fdim, "bond_fdim": encoder.bond_fdim}
        config = BiomedDMPNNConfig(**graph, num_features=encoder.num_features, dropout=job.spec.training.dropout or 0.0, **head_labels(labels, num_outputs))
        return BiomedDMPNNForSequenceClassification(config)

    def register_auto_classes(self) -> None:
        import biomed.families.molecules.dmpnn  # noqa: F401  (registers the D-MPNN with the Auto classes)

        super().register_auto_classes()

    def explain(self, predictor, raw, validated, *, target_index: int, n_steps: int):
        from biomed.families.molecules.explain import graph_explanation

        if predictor.encoder.metadata().get("kind") == "molecule_graph":
            return graph_explanation(predictor, raw, validated, target_index=target_index, n_steps=n_steps)
        return super().explain(predictor, raw, validated, target_index=target_index, n_steps=n_steps)

    def attribution_entries(self, tokens, raw: str, validated: str) -> list[dict]:
        """Atoms and bonds of the user's SMILES (explain.py maps the canonical form back)."""
        from biomed.families.molecules.explain import smiles_token_entries

        return smiles_token_entries(tokens, raw, validated)

    def baseline(self, target) -> Baseline:
        return Baseline("morgan_random_forest", morgan_random_forest)


MOLECULES = MoleculeFamily(
    name="smiles",
    description="Molecules as SMILES strings.",
    tasks=(
        TaskDef("molecule_classification", "classification", "auroc", "Molecules as SMILES to labels."),
        TaskDef("molecule_regression", "regression", "rmse", "Molecules as SMILES to a real-valued property."),
    ),
    backbones=BACKBONES,
    model_section=offering(MoleculeModelFields, "molecule", BACKBONES),
    data_section=MoleculeData,
    make_check=SmilesValidator,
    check_from=SmilesValidator.from_dict,
    baseline_fn=morgan_random_forest,
    baseline_name="morgan_random_forest",
    planted_table=_planted,
    own_tokenizer=lambda spec, inputs, pieces=None: smiles_tokenizer(inputs, pieces=pieces),
    tokenizer_kinds=("wordlevel", "bpe"),
    pre_tokenizer=smiles_split,
    split_methods=("scaffold",),
)
