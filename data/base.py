"""Map-style datasets returned by :func:`data.get_dataset`.

Every classification dataset yields ``(image, label)`` with ``image`` an RGB ``PIL.Image`` (or
``transform(image)`` when a transform is given) and ``label`` a Python ``int``. Attributes:

* ``targets`` -- ``(N,)`` int64 array of class ids (row order = item order),
* ``classes`` -- list of C class names, index = class id (the names used for label embeddings),
* ``name`` / ``split`` -- the registry name and split the dataset was built for.

Captioning datasets (:class:`CaptionDataset`) yield ``(image, caption)`` and expose ``captions``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

__all__ = ["LabeledImageDataset", "ArrayImageDataset", "FileImageDataset", "CaptionDataset", "to_rgb_pil"]


def to_rgb_pil(array: np.ndarray) -> Image.Image:
    """Convert an (H, W) grayscale or (H, W, 3) uint8 array to an RGB PIL image (gray replicated)."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr), mode="RGB")


class LabeledImageDataset(Dataset):
    """Base class: labels + class names + optional transform; subclasses implement ``load_image``."""

    def __init__(self, targets: Sequence[int], classes: Sequence[str], *, transform: Optional[Callable] = None,
                 name: str = "", split: str = ""):
        self.targets = np.asarray(targets, dtype=np.int64).copy()
        if self.targets.ndim != 1:
            raise ValueError(f"targets must be 1-D, got shape {self.targets.shape}")
        self.classes = [str(c) for c in classes]
        if self.targets.size and (self.targets.min() < 0 or self.targets.max() >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}), got range "
                             f"[{self.targets.min()}, {self.targets.max()}]")
        self.transform = transform
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return int(self.targets.size)

    def load_image(self, index: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        index = int(index) % len(self)
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)})")


class ArrayImageDataset(LabeledImageDataset):
    """Images held in memory as a uint8 array of shape (N, H, W) (grayscale) or (N, H, W, 3)."""

    def __init__(self, images: np.ndarray, targets: Sequence[int], classes: Sequence[str], **kwargs):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(f"images must be a uint8 (N, H, W[, 3]) array, got {images.dtype} {images.shape}")
        super().__init__(targets, classes, **kwargs)
        if images.shape[0] != len(self.targets):
            raise ValueError(f"{images.shape[0]} images but {len(self.targets)} labels")
        self.images = images

    def load_image(self, index: int) -> Image.Image:
        return to_rgb_pil(self.images[index])


class FileImageDataset(LabeledImageDataset):
    """Images read lazily from files; ``samples`` is the list of ``(path, label)`` pairs."""

    def __init__(self, paths: Sequence[str | Path], targets: Sequence[int], classes: Sequence[str], **kwargs):
        super().__init__(targets, classes, **kwargs)
        self.paths = [Path(p) for p in paths]
        if len(self.paths) != len(self.targets):
            raise ValueError(f"{len(self.paths)} image paths but {len(self.targets)} labels")

    @property
    def samples(self):
        return [(str(p), int(t)) for p, t in zip(self.paths, self.targets)]

    def load_image(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as img:
            return img.convert("RGB")


class CaptionDataset(Dataset):
    """Image-caption pairs: item i is ``(image_i, captions[i])``.

    Attributes: ``paths`` (N image files), ``captions`` (N strings, the caption of each item),
    ``all_captions`` (N lists: every reference caption of the image), ``targets`` (``arange(N)``:
    each item is its own group, there are no classes), ``classes`` (empty list).
    """

    def __init__(self, paths: Sequence[str | Path], all_captions: Sequence[Sequence[str]], *,
                 caption_index: int = 0, transform: Optional[Callable] = None, name: str = "", split: str = ""):
        if len(paths) != len(all_captions):
            raise ValueError(f"{len(paths)} images but {len(all_captions)} caption lists")
        if caption_index < 0:
            raise ValueError(f"caption_index must be >= 0, got {caption_index}")
        self.paths = [Path(p) for p in paths]
        self.all_captions: List[List[str]] = [[str(c) for c in caps] for caps in all_captions]
        short = [i for i, caps in enumerate(self.all_captions) if len(caps) <= caption_index]
        if short:
            raise ValueError(f"caption_index={caption_index} but image {self.paths[short[0]]} has only "
                             f"{len(self.all_captions[short[0]])} caption(s)")
        self.captions: List[str] = [caps[caption_index] for caps in self.all_captions]
        self.targets = np.arange(len(self.paths), dtype=np.int64)
        self.classes: List[str] = []
        self.transform = transform
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        index = int(index) % len(self)
        with Image.open(self.paths[index]) as img:
            image = img.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.captions[index]

    def __repr__(self) -> str:
        return f"CaptionDataset(name={self.name!r}, split={self.split!r}, n={len(self)})"
