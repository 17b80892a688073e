"""The `dmpnn` backbone: chemprop's directed message passing (D-MPNN) as a Hugging Face model.

chemprop's `BondMessagePassing` and aggregation are the body; an optional batch norm over the
molecule vector, the molecule-level features concatenated after it (as chemprop's `MPNN.fingerprint`
does), and chemprop's `MLP` as the head (`classifier`, so it takes the head learning rate). Wrapped
in a `PreTrainedModel` so that training, DDP, safetensors checkpoints and `Predictor` treat it as
every other backbone: `save_pretrained` writes config.json + model.safetensors, and
`AutoModelForSequenceClassification.from_pretrained` reloads it once this module is imported.
Lightning's trainer is never used; training is the service's own Ray Train loop.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

AGGREGATIONS = ("mean", "sum", "norm")


class BiomedDMPNNConfig(PretrainedConfig):
    model_type = "biomed-dmpnn"

    def __init__(
        self, atom_fdim: int = 72, bond_fdim: int = 14, hidden_size: int = 300, depth: int = 3, dropout: float = 0.0,
        aggregation: str = "norm", aggregation_norm: float = 100.0, batch_norm: bool = False, num_features: int = 0,
        ffn_hidden_size: int = 300, ffn_num_layers: int = 1, **kwargs,
    ):
        super().__init__(**kwargs)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {aggregation!r} is not one of {list(AGGREGATIONS)}")
        self.atom_fdim, self.bond_fdim = atom_fdim, bond_fdim
        self.hidden_size, self.depth, self.dropout = hidden_size, depth, dropout
        self.aggregation, self.aggregation_norm, self.batch_norm = aggregation, aggregation_norm, batch_norm
        self.num_features = num_features
        self.ffn_hidden_size, self.ffn_num_layers = ffn_hidden_size, ffn_num_layers


class _Graph:
    """The attributes chemprop's message passing reads from a BatchMolGraph, from plain tensors."""

    __slots__ = ("V", "E", "edge_index", "rev_edge_index", "batch")

    def __init__(self, V, E, edge_index, rev_edge_index, batch):
        self.V, self.E, self.edge_index, self.rev_edge_index, self.batch = V, E, edge_index, rev_edge_index, batch


class BiomedDMPNNForSequenceClassification(PreTrainedModel):
    """Molecule graphs → D-MPNN → aggregation → [batch norm] → ‖ features → MLP → num_labels outputs."""

    config_class = BiomedDMPNNConfig
    base_model_prefix = "message_passing"

    def __init__(self, config: BiomedDMPNNConfig):
        from chemprop.nn import AggregationRegistry, BondMessagePassing
        from chemprop.nn.ffn import MLP

        super().__init__(config)
        self.message_passing = BondMessagePassing(
            d_v=config.atom_fdim, d_e=config.bond_fdim, d_h=config.hidden_size, depth=config.depth, dropout=config.dropout,
        )
        options = {"norm": config.aggregation_norm} if config.aggregation == "norm" else {}
        self.aggregation = AggregationRegistry[config.aggregation](**options)
        self.norm = torch.nn.BatchNorm1d(config.hidden_size) if config.batch_norm else torch.nn.Identity()
        self.classifier = MLP.build(
            input_dim=config.hidden_size + config.num_features, output_dim=config.num_labels,
            hidden_dim=config.ffn_hidden_size, n_layers=config.ffn_num_layers, dropout=config.dropout,
        )
        self.post_init()

    def _init_weights(self, module):
        # chemprop's layers keep PyTorch's own initialisation, as chemprop trains them.
        pass

    def molecule_vectors(self, V, E, edge_index, rev_edge_index, graph_index, features=None) -> torch.Tensor:
        """The learned molecule representation (chemprop's fingerprint), before the head."""
        graph = _Graph(V, E, edge_index, rev_edge_index, graph_index)
        vectors = self.aggregation(self.message_passing(graph), graph_index)
        # Batch norm cannot train on one molecule (a batch's last row alone); it keeps its statistics then.
        if not (self.training and len(vectors) == 1):
            vectors = self.norm(vectors)
        return vectors if features is None else torch.cat([vectors, features.to(vectors.dtype)], dim=1)

    def forward(self, V, E, edge_index, rev_edge_index, graph_index, features=None, **_) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier(self.molecule_vectors(V, E, edge_index, rev_edge_index, graph_index, features)))


AutoConfig.register(BiomedDMPNNConfig.model_type, BiomedDMPNNConfig)
AutoModelForSequenceClassification.register(BiomedDMPNNConfig, BiomedDMPNNForSequenceClassification)
