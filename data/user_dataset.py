"""User-supplied image data for ``select_models.py``: a class-per-folder tree or a CSV of paths.

Two layouts are accepted:

* a folder with one sub-folder per class (torchvision ``ImageFolder`` layout)::

      my_data/cat/001.jpg, my_data/cat/002.png, my_data/dog/xyz.jpg, ...

  class names are the sub-folder names (underscores become spaces for the text encoders);
* a CSV file with a header containing ``path`` and ``label`` columns (paths relative to the CSV's
  folder or absolute); ``label`` holds class names (or integer ids).

Class ids are assigned in sorted order of the class names, so the result does not depend on the
file-system listing order.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["UserImageDataset", "load_user_dataset", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class UserImageDataset:
    """A map-style dataset of ``(image, label)`` pairs over image files on disk.

    ``image`` is an RGB ``PIL.Image`` (or ``transform(image)`` when a transform is given).
    Attributes: ``samples`` (list of (path, label)), ``targets`` (int labels), ``classes`` (names,
    index = class id), ``classnames`` (names made readable for text encoders).
    """

    def __init__(self, samples: Sequence[Tuple[str, int]], classes: Sequence[str],
                 transform: Optional[Callable] = None):
        if len(samples) == 0:
            raise ValueError("the dataset has no images")
        self.samples: List[Tuple[str, int]] = [(str(p), int(y)) for p, y in samples]
        self.classes: List[str] = list(classes)
        self.classnames: List[str] = [c.replace("_", " ").strip() for c in self.classes]
        self.targets = np.array([y for _, y in self.samples], dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except Exception as exc:  # a corrupt or unreadable file: name it
            raise ValueError(f"cannot read image {path}: {exc}") from exc
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _from_folder(root: Path) -> Tuple[List[Tuple[str, int]], List[str]]:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root} has no class sub-folders (expected one sub-folder of images per class)")
    classes, samples = [], []
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and _is_image(p))
        if not files:
            raise ValueError(f"class folder {d} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        cid = len(classes)
        classes.append(d.name)
        samples.extend((str(p), cid) for p in files)
    return samples, classes


def _from_csv(csv_path: Path) -> Tuple[List[Tuple[str, int]], List[str]]:
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path} must have a header with 'path' and 'label' columns, "
                             f"got {reader.fieldnames}")
        rows = [(r["path"], r["label"]) for r in reader]
    if not rows:
        raise ValueError(f"{csv_path} lists no images")
    base = csv_path.parent
    classes = sorted({lab for _, lab in rows}, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for p, lab in rows:
        path = Path(p) if os.path.isabs(p) else base / p
        if not path.is_file():
            raise FileNotFoundError(f"image listed in {csv_path} does not exist: {path}")
        samples.append((str(path), index[lab]))
    return samples, classes


def load_user_dataset(source: str | os.PathLike, transform: Optional[Callable] = None) -> UserImageDataset:
    """Load a class-per-folder tree or a ``path,label`` CSV (see the module docstring)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"no such image folder or CSV file: {source}")
    samples, classes = _from_csv(source) if source.is_file() else _from_folder(source)
    if len(classes) < 2:
        raise ValueError(f"{source} has a single class ({classes[0]!r}); model selection needs at least 2")
    return UserImageDataset(samples, classes, transform=transform)
