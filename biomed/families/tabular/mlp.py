"""The tabular family's MLP as a Hugging Face `PreTrainedModel`, registered with the Auto
classes, so it saves as safetensors and reloads with
`AutoModelForSequenceClassification.from_pretrained` like the transformer families."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class BiomedMLPConfig(PretrainedConfig):
    model_type = "biomed-mlp"

    def __init__(self, num_features: int = 1, hidden_sizes: list[int] | tuple[int, ...] = (128, 64), dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_features = num_features
        self.hidden_sizes = list(hidden_sizes)
        self.dropout = dropout


class BiomedMLPForSequenceClassification(PreTrainedModel):
    """Features → [Linear, LayerNorm, GELU, Dropout] × len(hidden_sizes) → Linear(num_labels)."""

    config_class = BiomedMLPConfig
    base_model_prefix = "mlp"

    def __init__(self, config: BiomedMLPConfig):
        super().__init__(config)
        layers, width = [], config.num_features
        for size in config.hidden_sizes:
            layers += [torch.nn.Linear(width, size), torch.nn.LayerNorm(size), torch.nn.GELU(), torch.nn.Dropout(config.dropout)]
            width = size
        self.mlp = torch.nn.Sequential(*layers)
        self.classifier = torch.nn.Linear(width, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        # PyTorch's own (Kaiming-uniform) initialisation of each layer suits a ReLU-family MLP
        # better than BERT's N(0, 0.02); nothing to redo here.
        pass

    def forward(self, features: torch.Tensor, **_) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier(self.mlp(features)))


AutoConfig.register(BiomedMLPConfig.model_type, BiomedMLPConfig)
AutoModelForSequenceClassification.register(BiomedMLPConfig, BiomedMLPForSequenceClassification)
