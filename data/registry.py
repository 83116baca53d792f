"""Dataset registry + factory: every dataset of the project behind one ``get_dataset`` call.

A dataset is described by a :class:`DatasetSpec` (name, kind, splits, where its files live, how to
get them, and a ``build(root, split, **options)`` factory) and registered with
:func:`register_dataset`. ``get_dataset`` validates the name and split, resolves the data root,
checks that the files exist (a missing root raises :class:`DatasetNotFoundError` naming the path and
how to obtain the data) and calls the factory.

Data root (for the datasets that live on disk, i.e. kinds ``classification`` and ``caption``):
``root=`` argument, else the environment variable ``MODEL_SELECTOR_DATA``. The dataset's files are
looked up under ``{root}/{spec.subdir}`` in the layout described by ``spec.layout``. Offline
datasets ship with registry packages and do not read the root (it is accepted, so one root can
serve a mix of datasets; ``fashion_mnist`` takes ``idx_dir=`` for another folder of IDX files).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from common import Registry

__all__ = ["DatasetSpec", "DATASETS", "DATA_ROOT_ENV", "KINDS", "DatasetNotFoundError", "register_dataset",
           "list_datasets", "get_dataset", "get_dataset_spec", "get_classnames", "resolve_root",
           "load_classnames_file"]

DATA_ROOT_ENV = "MODEL_SELECTOR_DATA"
KINDS = ("classification", "caption", "offline", "vqa", "rec", "tqa")   # vqa/rec/tqa: registered by tasks/
_CLASSNAMES_DIR = Path(__file__).resolve().parent / "classnames"


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are not where they should be (the message names the path and the fix)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the factory needs to know about one dataset.

    ``build(root, split, **options)`` returns the dataset; ``root`` is the dataset's own folder
    (``{data_root}/{subdir}``) for on-disk datasets and ``None``/the user's folder for offline ones.
    ``required`` lists paths relative to that folder that must exist before ``build`` is called.
    """

    name: str
    kind: str
    build: Callable
    splits: Tuple[str, ...]
    description: str
    subdir: Optional[str] = None          # folder under the data root (None: offline, no root needed)
    required: Tuple[str, ...] = ()        # paths under {root}/{subdir} that must exist
    layout: str = ""                      # the expected file layout, shown in errors
    how_to_get: str = ""                  # where to obtain the files, shown in errors
    classnames: Optional[Tuple[str, ...]] = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.splits:
            raise ValueError(f"dataset {self.name!r}: no splits")
        if self.kind in ("classification", "caption") and self.subdir is None:
            raise ValueError(f"dataset {self.name!r}: on-disk datasets need a subdir under the data root")


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (names are unique)."""
    return DATASETS.add(spec.name, spec)


def list_datasets(kind: Optional[str] = None) -> List[str]:
    """Sorted names of the registered datasets, optionally only those of one ``kind``."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; kinds: {', '.join(KINDS)}")
    return sorted(n for n, s in DATASETS.items() if kind is None or s.kind == kind)


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}") from None


def resolve_root(spec: DatasetSpec, root=None) -> Optional[Path]:
    """The folder holding ``spec``'s files: ``{root or $MODEL_SELECTOR_DATA}/{spec.subdir}``.

    Offline datasets return ``None`` (they do not read the root). On-disk datasets
    without any root raise :class:`DatasetNotFoundError`; a missing folder or required file raises
    it too, naming the path, the expected layout and where to get the data.
    """
    if spec.subdir is None:            # offline / built sets: no data root
        return None
    base = root if root is not None else os.environ.get(DATA_ROOT_ENV)
    if base is None or str(base) == "":
        raise DatasetNotFoundError(
            f"dataset {spec.name!r} needs a data root: pass root=... or set ${DATA_ROOT_ENV}; its files are "
            f"expected under {{root}}/{spec.subdir} ({spec.layout}). {spec.how_to_get}")
    folder = Path(base) / spec.subdir
    missing = [folder / rel for rel in (("",) + spec.required) if not (folder / rel).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"dataset {spec.name!r}: missing {missing[0]} (expected layout under {folder}: {spec.layout}). "
            f"{spec.how_to_get}")
    return folder


def get_dataset(name: str, split: str = "train", root=None, transform=None, **options):
    """Build dataset ``name`` for ``split``.

    Items are ``(image, int label)`` (classification / offline) or ``(image, caption)`` (caption);
    ``image`` is an RGB PIL image, or ``transform(image)`` if a transform is given. The result
    exposes ``.targets`` (int64 labels), ``.classes`` (class names, index = label) and, for
    captioning sets, ``.captions``. ``options`` go to the dataset's factory (see docs/data.md).
    """
    spec = get_dataset_spec(name)
    if split not in spec.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(spec.splits)}")
    folder = resolve_root(spec, root)
    dataset = spec.build(folder, split, transform=transform, **options)
    dataset.name, dataset.split = name, split
    return dataset


@lru_cache(maxsize=None)
def load_classnames_file(filename: str) -> Dict[str, Tuple[str, ...]]:
    """Read ``data/classnames/{filename}`` ({"datasets": {name: [class names]}})."""
    path = _CLASSNAMES_DIR / filename
    with open(path, encoding="utf-8") as fh:
        payload = json.load(fh)
    return {k: tuple(v) for k, v in payload["datasets"].items()}


def get_classnames(name: str) -> List[str]:
    """Class names of dataset ``name`` in class-id order (no files of the dataset are needed)."""
    spec = get_dataset_spec(name)
    if spec.classnames is None:
        raise ValueError(f"dataset {name!r} ({spec.kind}) has no class names")
    return list(spec.classnames)
