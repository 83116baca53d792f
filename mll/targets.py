"""The 17 target datasets of the MLL benchmark at full scale, read from local roots (never downloaded).

Class names, domain and task come from ``mll/resources/mll_datasets.json``; an image's label is
an index into that class list. No loader assumes that the list is in its label order:

* **class-named image folders** (the released code's ``ImageFolder`` layout), labels mapped by
  folder *name* (:func:`class_key`), never by position:

  - ``{root}/{Target}/test/{class}/*``: FER2013, Flowers102, GTSRB, clevr_closest_object_distance,
    dmlab;
  - ``{root}/{Target}/{class}/*``, the whole dataset: UCF101 (middle frames), resisc45;

* **torchvision** (``download=False``, torchvision's own layout under ``{root}``), the released
  splits: CIFAR100 (test), Country211 (``valid``), DTD (``val``), Food101, MNIST, OxfordIIITPet,
  PCAM (needs ``h5py``), RenderedSST2, STL10, StanfordCars (test). At load time torchvision's
  label order (its ``classes`` attribute; Country211: its folder codes via
  ``resources/country211_codes.json``; PCAM, which has no ``classes``: the documented order
  0 = negative, 1 = positive (metastatic tissue in the centre patch)) is compared with the JSON
  list, and a mismatch is a ``ValueError``.

:func:`missing_target_paths` lists what a target needs on disk (the full-scale preflight).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from common import Registry
from .tasks import TargetTask

__all__ = ["mll_datasets", "class_key", "match_class_folders", "ClassFolderDataset", "TARGET_LOADERS",
           "TargetLoader", "TorchvisionLoader", "FolderLoader", "load_target_dataset", "full_target",
           "missing_target_paths", "FULL_TARGETS", "PCAM_CLASS_ORDER"]

RESOURCES = Path(__file__).resolve().parent / "resources"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
#: PCAM's documented label order (Veeling et al. 2018; torchvision's PCAM has no ``classes``)
PCAM_CLASS_ORDER = ("negative", "positive")


@functools.lru_cache(maxsize=1)
def mll_datasets() -> dict:
    """``{"classnames": {name: [...]}, "target_datasets": {name: {domain, task}}, "sample_datasets": ...}``."""
    with open(RESOURCES / "mll_datasets.json") as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=1)
def _country211_codes() -> Dict[str, str]:
    with open(RESOURCES / "country211_codes.json") as fh:
        return json.load(fh)["codes"]


FULL_TARGETS = ("CIFAR100", "Country211", "clevr_closest_object_distance", "DTD", "dmlab", "Flowers102",
                "MNIST", "OxfordIIITPet", "PCAM", "FER2013", "Food101", "GTSRB", "resisc45", "RenderedSST2",
                "StanfordCars", "STL10", "UCF101")


# ------------------------------------------------------------------------------------------------
# class-named image folders
# ------------------------------------------------------------------------------------------------
def class_key(name: str) -> str:
    """Matching key of a class name or folder name: case-folded, letters and digits only, so that
    ``"Apply_Eye_Makeup"``, ``"ApplyEyeMakeup"`` and ``"apply eye makeup"`` all give
    ``"applyeyemakeup"`` (spaces, underscores, hyphens and punctuation are ignored)."""
    return "".join(ch for ch in str(name).casefold() if ch.isalnum())


def match_class_folders(folders: Sequence[str], classnames: Sequence[str], where: str) -> Dict[str, int]:
    """``{folder: class index}``: each folder matches the class with the same :func:`class_key`.

    ValueError (listing them) when a folder matches no class, a class has no folder, or two
    classes / two folders share a key."""
    keys: Dict[str, int] = {}
    for i, c in enumerate(classnames):
        k = class_key(c)
        if not k or k in keys:
            raise ValueError(f"{where}: class names {classnames[keys.get(k, i)]!r} and {c!r} cannot be told apart "
                             "by folder name (same key after dropping case and non-alphanumerics)")
        keys[k] = i
    mapping, unmatched, seen = {}, [], {}
    for f in folders:
        k = class_key(f)
        if k not in keys:
            unmatched.append(f)
        elif k in seen:
            raise ValueError(f"{where}: folders {seen[k]!r} and {f!r} both match class {classnames[keys[k]]!r}")
        else:
            seen[k] = f
            mapping[f] = keys[k]
    absent = [c for c in classnames if class_key(c) not in seen]
    if unmatched or absent:
        raise ValueError(f"{where}: class folders do not match the class list (matching ignores case, spaces, "
                         f"underscores and punctuation): folders without a class: {unmatched}; "
                         f"classes without a folder: {absent}")
    return mapping


class ClassFolderDataset:
    """Images under ``{root}/{class folder}/*`` for each root in ``roots``; the label of an image
    is the index in ``classnames`` of the class its folder matches (:func:`match_class_folders`).
    ``.classes`` = ``classnames``, ``.targets`` = labels, items ``(RGB PIL image, label)``."""

    def __init__(self, roots: Sequence[str | os.PathLike], classnames: Sequence[str], *, name: str = "dataset"):
        self.classes = list(classnames)
        self.files: List[Tuple[int, Path]] = []
        for root in map(Path, roots):
            if not root.is_dir():
                raise FileNotFoundError(f"target dataset {name!r}: folder {root} does not exist (expected one "
                                        "sub-folder of images per class, named by class)")
            dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
            mapping = match_class_folders(dirs, self.classes, f"target dataset {name!r} ({root})")
            for d in dirs:
                self.files.extend((mapping[d], f) for f in sorted((root / d).iterdir())
                                  if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise FileNotFoundError(f"target dataset {name!r}: no images under {[str(r) for r in roots]}")
        self.targets = [c for c, _ in self.files]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image
        c, f = self.files[i]
        with Image.open(f) as im:
            return im.convert("RGB"), c


# ------------------------------------------------------------------------------------------------
# loaders
# ------------------------------------------------------------------------------------------------
class TargetLoader:
    """How one target is read: :meth:`required_paths` (checked by the preflight),
    :attr:`modules` (Python packages it needs) and :meth:`load` -> dataset with ``.targets``."""

    modules: Tuple[str, ...] = ()

    def required_paths(self, root: Path, name: str) -> List[Path]:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, root: Path, name: str, classnames: Sequence[str]):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class FolderLoader(TargetLoader):
    """``{root}/{name}/{subdir}/{class}/*`` (``subdir=""``: class folders directly under ``{root}/{name}``)."""

    subdir: str = "test"

    def required_paths(self, root: Path, name: str) -> List[Path]:
        return [Path(root) / name / self.subdir if self.subdir else Path(root) / name]

    def load(self, root: Path, name: str, classnames: Sequence[str]):
        return ClassFolderDataset(self.required_paths(root, name), classnames, name=name)


class _WithTargets:
    """A torchvision dataset with a ``.targets`` list and RGB images."""

    def __init__(self, ds, targets, classes):
        self.ds, self.targets, self.classes = ds, [int(t) for t in targets], list(classes)

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        image, label = self.ds[i]
        return image.convert("RGB"), int(label)


@dataclass(frozen=True)
class TorchvisionLoader(TargetLoader):
    """``torchvision.datasets.{cls_name}(root, download=False, **kwargs)``; ``labels(ds)`` its label
    list, ``class_order(ds)`` its label order as class names (compared with the JSON list)."""

    cls_name: str
    kwargs: Mapping[str, object]
    required: Tuple[str, ...]
    labels: Callable[[object], List[int]]
    class_order: Callable[[object], List[str]]
    modules: Tuple[str, ...] = field(default=())

    def required_paths(self, root: Path, name: str) -> List[Path]:
        return [Path(root) / r for r in self.required]

    def load(self, root: Path, name: str, classnames: Sequence[str]):
        import torchvision.datasets as tvd
        absent = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if absent:
            raise ImportError(f"target dataset {name!r} (torchvision {self.cls_name}) needs the Python packages {absent}")
        try:
            ds = getattr(tvd, self.cls_name)(str(root), download=False, **dict(self.kwargs))
        except (RuntimeError, FileNotFoundError) as exc:
            raise FileNotFoundError(f"torchvision {self.cls_name} not found under {root} ({exc}); it needs "
                                    f"{[str(p) for p in self.required_paths(root, name)]}") from exc
        order = list(self.class_order(ds))
        if order != list(classnames):
            bad = [i for i in range(max(len(order), len(classnames)))
                   if i >= len(order) or i >= len(classnames) or order[i] != classnames[i]]
            i = bad[0]
            raise ValueError(f"target dataset {name!r}: torchvision {self.cls_name}'s label order differs from "
                             f"mll_datasets.json at {len(bad)} of {len(classnames)} positions, first at {i}: "
                             f"torchvision {order[i] if i < len(order) else None!r} vs list "
                             f"{classnames[i] if i < len(classnames) else None!r}")
        targets = self.labels(ds)
        if len(targets) and (min(targets) < 0 or max(targets) >= len(classnames)):
            raise ValueError(f"target dataset {name!r}: labels outside [0, {len(classnames)})")
        return _WithTargets(ds, targets, classnames)


def _attr(name: str) -> Callable[[object], List[int]]:
    return lambda ds: [int(v) for v in getattr(ds, name)]


def _sample_labels(ds) -> List[int]:
    return [int(s[1]) for s in ds._samples]


def _pcam_labels(ds) -> List[int]:
    with ds.h5py.File(ds._base_folder / ds._FILES[ds._split]["targets"][0]) as fh:
        return [int(v) for v in fh["y"][:, 0, 0, 0]]


def _classes(ds) -> List[str]:
    return list(ds.classes)


def _country_names(ds) -> List[str]:
    """torchvision Country211's class folders are ISO codes: their names, unknown codes kept as is."""
    name_of = {code: n for n, code in _country211_codes().items()}
    return [name_of.get(c, c) for c in ds.classes]


_MNIST_RAW = tuple(f"MNIST/raw/{f}" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
_CIFAR = tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta"))
_STL = tuple(f"stl10_binary/{f}" for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin",
                                           "test_y.bin", "class_names.txt"))

#: target name -> loader
TARGET_LOADERS: Registry[TargetLoader] = Registry("target dataset")
for _name, _loader in {
    "CIFAR100": TorchvisionLoader("CIFAR100", {"train": False}, _CIFAR, _attr("targets"), _classes),
    "Country211": TorchvisionLoader("Country211", {"split": "valid"}, ("country211/valid",), _attr("targets"),
                                    _country_names),
    "DTD": TorchvisionLoader("DTD", {"split": "val"}, ("dtd/dtd/labels/val1.txt", "dtd/dtd/images"),
                             _attr("_labels"), _classes),
    "Food101": TorchvisionLoader("Food101", {"split": "test"}, ("food-101/meta/test.json", "food-101/images"),
                                 _attr("_labels"), _classes),
    "MNIST": TorchvisionLoader("MNIST", {"train": False}, _MNIST_RAW, _attr("targets"), _classes),
    "OxfordIIITPet": TorchvisionLoader("OxfordIIITPet", {"split": "test"},
                                       ("oxford-iiit-pet/annotations/test.txt", "oxford-iiit-pet/images"),
                                       _attr("_labels"), _classes),
    "PCAM": TorchvisionLoader("PCAM", {"split": "test"}, ("pcam/camelyonpatch_level_2_split_test_x.h5",
                                                          "pcam/camelyonpatch_level_2_split_test_y.h5"),
                              _pcam_labels, lambda ds: list(PCAM_CLASS_ORDER), modules=("h5py",)),
    "RenderedSST2": TorchvisionLoader("RenderedSST2", {"split": "test"},
                                      ("rendered-sst2/test/negative", "rendered-sst2/test/positive"),
                                      _sample_labels, _classes),
    "STL10": TorchvisionLoader("STL10", {"split": "test"}, _STL, _attr("labels"), _classes),
    "StanfordCars": TorchvisionLoader("StanfordCars", {"split": "test"},
                                      ("stanford_cars/devkit/cars_meta.mat", "stanford_cars/cars_test_annos_withlabels.mat",
                                       "stanford_cars/cars_test"), _sample_labels, _classes, modules=("scipy",)),
    **{n: FolderLoader("test") for n in ("FER2013", "Flowers102", "GTSRB", "clevr_closest_object_distance", "dmlab")},
    **{n: FolderLoader("") for n in ("UCF101", "resisc45")},
}.items():
    TARGET_LOADERS.add(_name, _loader)


def _resolve_root(name: str, root) -> Path:
    root = root or os.environ.get("MLL_TARGET_DATA")
    if root is None:
        raise FileNotFoundError(f"target dataset {name!r} needs a root: pass root= or set MLL_TARGET_DATA")
    return Path(root)


def _check_name(name: str) -> None:
    if name not in TARGET_LOADERS or name not in mll_datasets()["classnames"]:
        raise KeyError(f"unknown target dataset {name!r}; available: {sorted(TARGET_LOADERS)}")


def missing_target_paths(names: Sequence[str], root) -> List[str]:
    """Every path (and Python package) the targets ``names`` need under ``root`` that is absent."""
    out = []
    for name in names:
        _check_name(name)
        loader = TARGET_LOADERS[name]
        out += [f"target {name}: {p}" for p in loader.required_paths(Path(root), name) if not p.exists()]
        out += [f"target {name}: Python package {m!r}" for m in loader.modules if importlib.util.find_spec(m) is None]
    return out


def load_target_dataset(name: str, root: Optional[str | os.PathLike] = None):
    """The released evaluation split of full-scale target ``name`` from ``root`` (default
    ``$MLL_TARGET_DATA``): items ``(RGB PIL image, index into the JSON class list)``."""
    _check_name(name)
    return TARGET_LOADERS[name].load(_resolve_root(name, root), name, mll_datasets()["classnames"][name])


def full_target(name: str, *, root=None, per_class: Optional[int] = None, random_state: int = 0) -> TargetTask:
    """A :class:`mll.tasks.TargetTask` for full-scale target ``name`` (optionally ``per_class``
    images per class, drawn with ``random_state``)."""
    _check_name(name)
    info = mll_datasets()
    ds = load_target_dataset(name, root)
    targets = np.asarray(ds.targets)
    if per_class is None:
        idx = np.arange(len(targets))
    else:
        if per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        rng = np.random.default_rng(random_state)
        idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(targets == c))[:per_class]
                                      for c in np.unique(targets)]))
    meta = info["target_datasets"][name]
    return TargetTask(name, tuple(info["classnames"][name]), meta["domain"], meta["task"], ds,
                      tuple(int(i) for i in idx))
