"""Image preprocessing and augmentation as MONAI transforms, recorded with the checkpoint.

An `ImagePipeline` is plain settings (saved in biomed.json); from them it builds MONAI
`Compose` chains, so serving preprocesses exactly as training did:
- `prepare` (once per image, at encode): the backbone's channel count (grayscale repeated to RGB
  for RGB-pretrained backbones, RGB to luminance for one-channel models), then `Resize`;
- `augment` (training batches only): `RandFlip`, `RandRotate`, `RandZoom`, with probabilities
  and ranges scaled by `augment_strength` (0: none);
- `normalize` (every batch): ImageNet mean and std for ImageNet-pretrained backbones, else the
  [0, 1] decode range centred at 0.5.
Augmentation comes before normalisation so that the border a rotation or zoom fills is black.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Rec. 601 luma weights: RGB → one channel.
LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
# At augment_strength 1: flips, rotations and zooms each on half the images, up to 15° and ±15%.
MAX_ROTATE_DEG, MAX_ZOOM, MAX_PROB = 15.0, 0.15, 0.5


@dataclass(frozen=True)
class ImagePipeline:
    """Settings of the image transforms; `to_dict`/`from_dict` round-trip them through biomed.json."""

    image_size: int = 224
    channels: int = 3
    intensity: str = "imagenet"
    augment_strength: float = 0.0

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"channels {self.channels} is not 1 or 3")
        if self.intensity not in ("imagenet", "unit"):
            raise ValueError(f"intensity {self.intensity!r} is not 'imagenet' or 'unit'")
        if not 0.0 <= self.augment_strength <= 1.0:
            raise ValueError(f"augment_strength {self.augment_strength} is not between 0 and 1")

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """A decoded image (H×W or H×W×3, [0, 1]) as channels × size × size, float32."""
        from monai.transforms import Resize

        channel_first = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
        if channel_first.shape[0] == 1 and self.channels == 3:
            channel_first = np.repeat(channel_first, 3, axis=0)
        elif channel_first.shape[0] == 3 and self.channels == 1:
            channel_first = np.tensordot(LUMA, channel_first, axes=1)[None]
        resized = Resize((self.image_size, self.image_size), mode="area")(channel_first)
        return np.asarray(resized, dtype=np.float32)

    def augment(self, seed: int):
        """The training-only random chain (None at strength 0), seeded for reproducible runs."""
        if self.augment_strength == 0:
            return None
        from monai.transforms import Compose, RandFlip, RandRotate, RandZoom

        s, prob = self.augment_strength, MAX_PROB * self.augment_strength
        chain = Compose([
            RandFlip(prob=prob, spatial_axis=1),
            RandRotate(range_x=math.radians(MAX_ROTATE_DEG * s), prob=prob, padding_mode="zeros"),
            RandZoom(min_zoom=1 - MAX_ZOOM * s, max_zoom=1 + MAX_ZOOM * s, prob=prob, padding_mode="constant"),
        ])
        chain.set_random_state(seed=seed)
        return chain

    @cached_property
    def normalize(self):
        """The per-image normalisation, built once per pipeline (it runs on every batch)."""
        from monai.transforms import NormalizeIntensity

        if self.intensity == "imagenet":
            mean, std = IMAGENET_MEAN[: self.channels], IMAGENET_STD[: self.channels]
            if self.channels == 1:
                mean, std = (float(np.dot(LUMA, IMAGENET_MEAN)),), (float(np.dot(LUMA, IMAGENET_STD)),)
        else:
            mean, std = (0.5,) * self.channels, (0.5,) * self.channels
        return NormalizeIntensity(subtrahend=list(mean), divisor=list(std), channel_wise=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> ImagePipeline:
        return cls(**payload)
