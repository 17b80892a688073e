"""Decoded images → model batches through the checkpoint's recorded MONAI pipeline."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from biomed.families.images.transforms import ImagePipeline


@dataclass
class ImageRows:
    """Prepared images (N × C × size × size, resized, not yet normalised); a batch is
    normalised, and augmented first when these are training rows (`augmented`)."""

    pixels: np.ndarray
    pipeline: ImagePipeline
    augment: object = None  # a MONAI Compose, training rows only
    augment_seed: int = 0
    epoch: int = 0

    def __len__(self) -> int:
        return len(self.pixels)

    def lengths(self) -> list[int]:
        return [1] * len(self.pixels)

    def batch(self, rows) -> dict[str, torch.Tensor]:
        normalize = self.pipeline.normalize
        images = []
        for r in np.asarray(rows, dtype=np.int64):
            # A copy: MONAI's intensity transforms may write into a numpy input in place.
            image = self.pixels[r].copy()
            if self.augment is not None:
                # Seeded by (seed, epoch, row), not by a running stream: an image is transformed
                # alike whichever rank, batch or world size draws it, and a resumed run repeats
                # exactly what the lost one would have done.
                self.augment.set_random_state(seed=int(np.random.SeedSequence([self.augment_seed, self.epoch, int(r)]).generate_state(1)[0]))
                image = self.augment(image)
            images.append(torch.as_tensor(np.asarray(normalize(image), dtype=np.float32)))
        return {"pixel_values": torch.stack(images)}

    def take(self, rows) -> ImageRows:
        return replace(self, pixels=self.pixels[np.asarray(rows, dtype=np.int64)])

    def join(self, other: ImageRows) -> ImageRows:
        return replace(self, pixels=np.concatenate([self.pixels, other.pixels]))

    def augmented(self, seed: int) -> ImageRows:
        """The same rows with the pipeline's random transforms on every batch (training only)."""
        return replace(self, augment=self.pipeline.augment(seed), augment_seed=seed)

    def for_epoch(self, epoch: int) -> ImageRows:
        """These rows as drawn in `epoch` (each epoch transforms every image anew)."""
        return replace(self, epoch=epoch)


@dataclass
class ImageEncoder:
    """Decoded images (decode.py) → ImageRows; the pipeline is saved in biomed.json."""

    pipeline: ImagePipeline
    input_kind: str = "image"

    def encode(self, inputs, *, max_length=None) -> ImageRows:
        """`max_length` is ignored: images have a size, not a length."""
        size, channels = self.pipeline.image_size, self.pipeline.channels
        pixels = np.stack([self.pipeline.prepare(image) for image in inputs]) if len(inputs) else np.zeros((0, channels, size, size), np.float32)
        return ImageRows(pixels, self.pipeline)

    def metadata(self) -> dict:
        return {"input_kind": "image", "kind": "image", "pipeline": self.pipeline.to_dict()}

    def save(self, directory) -> None:
        pass  # the pipeline lives in biomed.json (metadata)

    @classmethod
    def from_metadata(cls, encoder: dict) -> ImageEncoder:
        return cls(ImagePipeline.from_dict(encoder["pipeline"]))
