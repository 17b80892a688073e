"""Medical images from bytes: PNG/JPEG through Pillow, DICOM through pydicom, checked at load.

Every decoded image is a float32 array in [0, 1], H×W (grayscale) or H×W×3 (RGB):
- PNG/JPEG: 8-bit values over 255, 16-bit over 65535; palette and alpha images become RGB;
- DICOM: the modality LUT (rescale slope and intercept) first, then a linear window (centre and
  width from the spec, else the header, else the frame's own range) onto [0, 1]; MONOCHROME1
  (bright background: CR and DX) is inverted so that dense tissue is bright in every image;
  a multi-frame file gives one frame (`frame`, the first by default).

The same validator reads a training file and a served request's bytes, so what trains is what
serves. Messages name the row and the reason, never the pixel data.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import asdict, dataclass

import numpy as np

from biomed.inputs import MAX_REPORTED, InvalidInputs

# Pillow modes read as grayscale or colour; anything else (CMYK, YCbCr, LAB, HSV) is refused.
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
RGB_MODES = ("RGB", "RGBA", "P", "PA", "RGBX")


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be: bounds on its file size and pixels (decompression bombs), and its
    smallest side. Checked from the header before the pixels are decoded."""

    max_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000
    min_side: int = 16


@dataclass(frozen=True)
class DicomOptions:
    """How a DICOM becomes one 2D image: a window (None: the header's, else the frame's range)
    and which frame of a multi-frame file."""

    window_center: float | None = None
    window_width: float | None = None
    frame: int = 0


class ImageError(ValueError):
    """One image that cannot be read; the message says why without quoting its contents."""


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file: 128 bytes of preamble, then "DICM"."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def decode_image(data: bytes | str, *, limits: ImageLimits = ImageLimits(), dicom: DicomOptions = DicomOptions()) -> np.ndarray:
    """One image's bytes (or their base64, as JSON requests carry them) as a float32 array in
    [0, 1] (H×W or H×W×3); ImageError if unreadable."""
    if isinstance(data, str):
        if len(data) > limits.max_bytes * 4 // 3 + 4:
            raise ImageError(f"base64 image of {len(data)} characters is over the limit of {limits.max_bytes} bytes")
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("not valid base64") from None
    if not isinstance(data, bytes | bytearray):
        raise ImageError(f"expected the image file's bytes or their base64, got {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise ImageError(f"{len(data)} bytes is over the limit of {limits.max_bytes}")
    array = _decode_dicom(bytes(data), limits, dicom) if is_dicom(data) else _decode_pillow(bytes(data), limits)
    if min(array.shape[:2]) < limits.min_side:
        raise ImageError(f"image of {array.shape[1]}x{array.shape[0]} pixels is smaller than {limits.min_side} on a side")
    if not np.isfinite(array).all():
        raise ImageError("image has non-finite pixel values")
    return array


def _check_pixels(width: int, height: int, frames: int, limits: ImageLimits) -> None:
    if width * height * frames > limits.max_pixels:
        raise ImageError(f"{width}x{height}x{frames} pixels is over the limit of {limits.max_pixels} (a decompression bomb guard)")


def _decode_pillow(data: bytes, limits: ImageLimits) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        raise ImageError("not a PNG, JPEG or DICOM image") from None
    if image.format not in ("PNG", "JPEG"):
        raise ImageError(f"format {image.format} is not PNG, JPEG or DICOM")
    _check_pixels(image.width, image.height, 1, limits)
    if image.mode not in GRAY_MODES + RGB_MODES:
        raise ImageError(f"mode {image.mode} is not grayscale or RGB")
    try:
        image.load()
    except (OSError, Image.DecompressionBombError, ValueError):
        raise ImageError(f"{image.format} data is truncated or corrupt") from None
    if image.mode in RGB_MODES:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if image.mode == "LA":
        image = image.convert("L")
    pixels = np.asarray(image)
    if pixels.dtype == np.bool_:
        return pixels.astype(np.float32)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype.kind in "ui":
        return (pixels.astype(np.float32) / 65535.0).clip(0.0, 1.0)
    return _min_max(pixels.astype(np.float32))


def _decode_dicom(data: bytes, limits: ImageLimits, options: DicomOptions) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (InvalidDicomError, AttributeError, KeyError, ValueError, TypeError, OSError, EOFError):
        raise ImageError("DICOM file is corrupt or holds no image") from None
    frames = int(ds.get("NumberOfFrames") or 1)
    _check_pixels(columns, rows, frames, limits)
    if not 0 <= options.frame < frames:
        raise ImageError(f"frame {options.frame} asked for; the file holds {frames}")
    try:
        pixels = ds.pixel_array
    except Exception:  # pydicom raises many kinds for a broken or undecodable pixel stream
        raise ImageError(f"DICOM pixel data does not decode (transfer syntax {ds.file_meta.get('TransferSyntaxUID', 'unknown')})") from None
    if frames > 1:
        pixels = pixels[options.frame]
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        return pixels.astype(np.float32) / float(2 ** int(ds.get("BitsStored", 8)) - 1)
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    center, width = _window(ds, options)
    image = _min_max(values) if width is None else ((values - (center - width / 2)) / width).clip(0.0, 1.0)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        image = 1.0 - image
    return image.astype(np.float32)


def _window(ds, options: DicomOptions) -> tuple[float | None, float | None]:
    """The spec's window, else the header's first one, else none (the frame's own range)."""
    if options.window_center is not None and options.window_width is not None:
        return options.window_center, options.window_width
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None, None
    width = _first(width)
    return (_first(center), width) if width > 0 else (None, None)


def _first(value) -> float:
    """A header value that may hold several windows: the first one."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, MultiValue | list | tuple) else float(value)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high <= low else (values - low) / (high - low)


# A probe image (the golden check's input, kept in the registry) is at most this many pixels on a side.
PROBE_SIDE = 96


def probe_png(image: np.ndarray) -> str:
    """A decoded image as a small 16-bit grayscale (or 8-bit RGB) PNG, base64: the golden
    check's input, small enough for the registry, decoded the same way by every replica."""
    from PIL import Image

    if image.ndim == 2:
        pil = Image.fromarray((image * 65535).round().astype(np.uint16))
    else:
        pil = Image.fromarray((image * 255).round().astype(np.uint8), mode="RGB")
    scale = min(1.0, PROBE_SIDE / max(pil.size))
    pil = pil.resize(tuple(max(16, round(side * scale)) for side in pil.size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class ImageValidator:
    """Image bytes → decoded arrays, or InvalidInputs naming each bad row (with `names`, its file)."""

    limits: ImageLimits = ImageLimits()
    dicom: DicomOptions = DicomOptions()
    kind: str = "image"

    def validate(self, values: list) -> list[np.ndarray]:
        problems, out = [], []
        for i, value in enumerate(values):
            try:
                out.append(decode_image(value, limits=self.limits, dicom=self.dicom))
            except ImageError as error:
                problems.append((i, str(error)))
        if problems:
            raise InvalidInputs(problems[:MAX_REPORTED], total=len(problems))
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "limits": asdict(self.limits), "dicom": asdict(self.dicom)}

    @classmethod
    def from_dict(cls, payload: dict) -> ImageValidator:
        return cls(limits=ImageLimits(**payload.get("limits", {})), dicom=DicomOptions(**payload.get("dicom", {})))


@dataclass(frozen=True)
class ImageFileValidator:
    """A data file's image column: paths (relative to the data file's folder, or absolute) →
    decoded images. A missing or unreadable file is a problem naming the row and the file."""

    images: ImageValidator = ImageValidator()
    root: str | None = None
    kind: str = "image"

    def for_source(self, source) -> ImageFileValidator:
        """This validator reading paths relative to the folder of data file `source`."""
        from pathlib import Path

        return ImageFileValidator(self.images, str(Path(source).resolve().parent))

    def validate(self, values: list) -> list[np.ndarray]:
        from pathlib import Path

        # One file at a time: read, decode, let the bytes go (never every file's bytes at once).
        problems, out = [], []
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                problems.append((i, "empty or not a path"))
                continue
            try:
                data = (Path(self.root or ".") / value).read_bytes()
            except OSError:
                problems.append((i, f"file {value!r} is missing or cannot be read"))
                continue
            try:
                out.append(decode_image(data, limits=self.images.limits, dicom=self.images.dicom))
            except ImageError as error:
                problems.append((i, f"file {value!r}: {error}"))
        if problems:
            raise InvalidInputs(problems[:MAX_REPORTED], total=len(problems))
        return out

    def to_dict(self) -> dict:
        """Served models read bytes, never server paths: the image check alone is recorded."""
        return self.images.to_dict()
