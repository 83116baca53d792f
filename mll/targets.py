"""The 17 target datasets of the MLL benchmark at full scale, read from local roots (never downloaded).

Class names, domain and task come from ``mll/resources/mll_datasets.json`` (the benchmark's
reference table). Images come from a registry of loaders over ``{root}``:

* torchvision datasets (``download=False``) in torchvision's own folder layout under ``{root}``:
  CIFAR100, Country211, DTD, FER2013, Flowers102, Food101, GTSRB, MNIST, OxfordIIITPet, PCAM
  (needs ``h5py``), RenderedSST2, STL10, StanfordCars (test split each);
* an image-folder layout ``{root}/{name}/test/{class index}/*`` for the VTAB / video sets without a
  torchvision class: UCF101 (middle frames), clevr_closest_object_distance, dmlab, resisc45.

Assumption (documented in docs/mll.md): the class order of the JSON is the loader's label order
(both follow the CLIP-benchmark conventions).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

__all__ = ["mll_datasets", "TARGET_LOADERS", "load_target_dataset", "full_target", "FULL_TARGETS"]

RESOURCES = Path(__file__).resolve().parent / "resources"


@functools.lru_cache(maxsize=1)
def mll_datasets() -> dict:
    """``{"classnames": {name: [...]}, "target_datasets": {name: {domain, task}}, "sample_datasets": ...}``."""
    with open(RESOURCES / "mll_datasets.json") as fh:
        return json.load(fh)


FULL_TARGETS = ("CIFAR100", "Country211", "clevr_closest_object_distance", "DTD", "dmlab", "Flowers102",
                "MNIST", "OxfordIIITPet", "PCAM", "FER2013", "Food101", "GTSRB", "resisc45", "RenderedSST2",
                "StanfordCars", "STL10", "UCF101")


class _ImageFolderByIndex:
    """``{root}/{class index}/*`` images; ``.targets`` = class indices."""

    def __init__(self, root: Path):
        if not root.is_dir():
            raise FileNotFoundError(f"target dataset folder {root} does not exist (expected one sub-folder per "
                                    "class index 0..C-1)")
        dirs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name))
        self.files = [(int(d.name), f) for d in dirs for f in sorted(d.iterdir()) if f.is_file()]
        self.targets = [c for c, _ in self.files]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image
        c, f = self.files[i]
        with Image.open(f) as im:
            return im.convert("RGB"), c


class _WithTargets:
    """A torchvision dataset with a ``.targets`` list (computed from its label attribute)."""

    def __init__(self, ds, targets):
        self.ds, self.targets = ds, list(int(t) for t in targets)

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        image, label = self.ds[i]
        return image.convert("RGB"), int(label)


def _attr(name: str) -> Callable[[object], List[int]]:
    return lambda ds: list(getattr(ds, name))


def _sample_labels(ds) -> List[int]:
    return [s[1] for s in ds._samples]


def _pcam_labels(ds) -> List[int]:
    with ds.h5py.File(ds._base_folder / ds._FILES[ds._split]["targets"][0]) as fh:
        return [int(v) for v in fh["y"][:, 0, 0, 0]]


def _tv(cls_name: str, labels: Callable[[object], List[int]], **kwargs) -> Callable[[Path], object]:
    """Factory of a torchvision dataset (``download=False``) whose label list ``labels(ds)`` gives."""
    def build(root: Path):
        import torchvision.datasets as tvd
        try:
            ds = getattr(tvd, cls_name)(str(root), download=False, **kwargs)
        except (RuntimeError, FileNotFoundError) as exc:
            raise FileNotFoundError(f"torchvision {cls_name} not found under {root} ({exc})") from exc
        return _WithTargets(ds, labels(ds))
    return build


def _folder(name: str) -> Callable[[Path], object]:
    return lambda root: _ImageFolderByIndex(Path(root) / name / "test")


TARGET_LOADERS: Dict[str, Callable[[Path], object]] = {
    "CIFAR100": _tv("CIFAR100", _attr("targets"), train=False),
    "Country211": _tv("Country211", _attr("targets"), split="test"),
    "DTD": _tv("DTD", _attr("_labels"), split="test"),
    "FER2013": _tv("FER2013", _sample_labels, split="test"),
    "Flowers102": _tv("Flowers102", _attr("_labels"), split="test"),
    "Food101": _tv("Food101", _attr("_labels"), split="test"),
    "GTSRB": _tv("GTSRB", _sample_labels, split="test"),
    "MNIST": _tv("MNIST", _attr("targets"), train=False),
    "OxfordIIITPet": _tv("OxfordIIITPet", _attr("_labels"), split="test"),
    "PCAM": _tv("PCAM", _pcam_labels, split="test"),
    "RenderedSST2": _tv("RenderedSST2", _sample_labels, split="test"),
    "STL10": _tv("STL10", _attr("labels"), split="test"),
    "StanfordCars": _tv("StanfordCars", _sample_labels, split="test"),
    **{n: _folder(n) for n in ("UCF101", "clevr_closest_object_distance", "dmlab", "resisc45")},
}


def load_target_dataset(name: str, root: Optional[str | os.PathLike] = None):
    """The test split of full-scale target ``name`` from ``root`` (default ``$MLL_TARGET_DATA``)."""
    if name not in TARGET_LOADERS:
        raise KeyError(f"unknown target dataset {name!r}; available: {sorted(TARGET_LOADERS)}")
    root = root or os.environ.get("MLL_TARGET_DATA")
    if root is None:
        raise FileNotFoundError(f"target dataset {name!r} needs a root: pass root= or set MLL_TARGET_DATA")
    return TARGET_LOADERS[name](Path(root))


def full_target(name: str, *, root=None, per_class: Optional[int] = None, random_state: int = 0):
    """A :class:`mll.benchmark.TargetTask` for full-scale target ``name`` (optionally subsampled)."""
    from .benchmark import TargetTask
    info = mll_datasets()
    if name not in info["target_datasets"]:
        raise KeyError(f"{name!r} is not an MLL target dataset")
    ds = load_target_dataset(name, root)
    targets = np.asarray(ds.targets)
    if per_class is None:
        idx = np.arange(len(targets))
    else:
        rng = np.random.default_rng(random_state)
        idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(targets == c))[:per_class]
                                      for c in np.unique(targets)]))
    meta = info["target_datasets"][name]
    return TargetTask(name, tuple(info["classnames"][name]), meta["domain"], meta["task"], ds,
                      tuple(int(i) for i in idx))
