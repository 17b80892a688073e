"""The spec's `data.images:` section: where image tasks find their files and how they are read."""

from __future__ import annotations

from pydantic import Field, model_validator

from biomed.images import DicomOptions, ImageFileValidator, ImageLimits, ImageValidator
from jobs.spec_base import _Spec


class ImageSpec(_Spec):
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

    def validator(self) -> ImageFileValidator:
        """The check of every image file (and, without the paths, of every served image)."""
        limits = ImageLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels, min_side=self.min_side)
        dicom = DicomOptions(window_center=self.window_center, window_width=self.window_width, frame=self.frame)
        return ImageFileValidator(ImageValidator(limits=limits, dicom=dicom))
