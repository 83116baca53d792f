"""Target tasks of the MLL benchmark: the base module that :mod:`mll.benchmark` (the methods) and
:mod:`mll.targets` (the full-scale loaders) both import, so that neither imports the other.

A :class:`TargetTask` is a list of class names, the task's general information (domain, task: the
inputs of the class-caption step) and an indexed image set whose labels index the class list.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

__all__ = ["TargetTask", "offline_target", "missing_caption_files", "load_caption_dir"]


@dataclass(frozen=True)
class TargetTask:
    """A target task: class names + general information (domain, task) and the test images
    ``dataset[i]`` for ``i in indices`` (items ``(PIL image, int label)``, label = index into
    ``classnames``; ``dataset.targets`` holds every label)."""

    name: str
    classnames: Tuple[str, ...]
    domain: str
    task: str
    dataset: object = field(repr=False)
    indices: Tuple[int, ...] = field(repr=False)

    @property
    def key(self) -> str:
        """Cache key of the ordered image set."""
        digest = hashlib.sha1(json.dumps(list(self.indices)).encode()).hexdigest()[:12]
        return f"target-{self.name}-{digest}"

    @functools.cached_property
    def record(self) -> Dict[str, object]:
        """What the image set is made of: its key and the dataset fingerprint of the chosen items
        (:func:`data.fingerprint.dataset_record`; computed once per task): the ``images_record``
        of its feature caches."""
        from torch.utils.data import Subset

        from data.fingerprint import dataset_record
        ds = self.dataset if hasattr(self.dataset, "__len__") else _SizedByTargets(self.dataset)
        return {"key": self.key, "dataset": dataset_record(Subset(ds, list(self.indices)))}

    def images(self) -> List:
        return [self.dataset[i][0] for i in self.indices]

    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset.targets, dtype=np.int64)[list(self.indices)]


class _SizedByTargets:
    """A dataset without ``__len__`` seen as ``len(dataset.targets)`` items (for its fingerprint)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset.targets)

    def __getitem__(self, i):
        return self.dataset[i]


def offline_target(name: str, *, per_class: int, random_state: int = 0, split: str = "test", root=None) -> TargetTask:
    """An offline dataset (``data.get_dataset``) as a target task: ``per_class`` test images per
    class (``data.subsample_per_class``), domain and task from ``offline_class_synsets.json``."""
    import data
    from .graph import offline_dataset_info
    ds = data.get_dataset(name, split, root=root)
    idx = data.subsample_per_class(ds, per_class, random_state=random_state)
    info = offline_dataset_info(name)
    return TargetTask(name, tuple(ds.classes), info["domain"], info["task"], ds, tuple(int(i) for i in idx))


def missing_caption_files(directory: str | os.PathLike, names: Sequence[str]) -> List[str]:
    """The caption files ``{directory}/{name}.json`` that do not exist."""
    return [str(Path(directory) / f"{n}.json") for n in names if not (Path(directory) / f"{n}.json").is_file()]


def load_caption_dir(directory: str | os.PathLike,
                     classnames: Mapping[str, Sequence[str]]) -> Dict[str, Dict[str, List[str]]]:
    """Class captions from a directory of the released caption files (``MLL/caption_gen/captions``):
    ``{directory}/{task}.json`` = ``{class name: [caption, ...]}`` with keys equal to the task's
    class list. ``classnames``: ``{task: class list}``. Returns ``{task: {class: [captions]}}``.

    FileNotFoundError listing every absent file; ValueError naming, per file, the classes it
    lacks, the keys that are no class, and classes whose captions are not a non-empty list of
    non-empty strings."""
    absent = missing_caption_files(directory, list(classnames))
    if absent:
        raise FileNotFoundError(f"caption directory {directory}: missing caption files {absent}")
    out: Dict[str, Dict[str, List[str]]] = {}
    for task, classes in classnames.items():
        path = Path(directory) / f"{task}.json"
        try:
            with open(path, encoding="utf-8") as fh:
                mapping = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"caption file {path} is not valid JSON ({exc})") from None
        if not isinstance(mapping, dict):
            raise ValueError(f"caption file {path} must hold an object {{class name: [captions]}}")
        missing = [c for c in classes if c not in mapping]
        extra = [k for k in mapping if k not in set(classes)]
        bad = [c for c in classes if c in mapping and not (
            isinstance(mapping[c], list) and mapping[c] and all(isinstance(x, str) and x.strip() for x in mapping[c]))]
        if missing or extra or bad:
            raise ValueError(f"caption file {path}: keys must equal the {len(classes)} classes of {task!r}; "
                             f"missing classes {missing}, keys that are no class {extra}, "
                             f"classes without a non-empty list of captions {bad}")
        out[task] = {c: list(mapping[c]) for c in classes}
    return out
