"""Target tasks of the MLL benchmark: the base module that :mod:`mll.benchmark` (the methods) and
:mod:`mll.targets` (the full-scale loaders) both import, so that neither imports the other.

A :class:`TargetTask` is a list of class names, the task's general information (domain, task: the
inputs of the class-caption step) and an indexed image set whose labels index the class list.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

__all__ = ["TargetTask", "offline_target"]


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

    def images(self) -> List:
        return [self.dataset[i][0] for i in self.indices]

    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset.targets, dtype=np.int64)[list(self.indices)]


def offline_target(name: str, *, per_class: int, random_state: int = 0, split: str = "test", root=None) -> TargetTask:
    """An offline dataset (``data.get_dataset``) as a target task: ``per_class`` test images per
    class (``data.subsample_per_class``), domain and task from ``offline_class_synsets.json``."""
    import data
    from .graph import offline_dataset_info
    ds = data.get_dataset(name, split, root=root)
    idx = data.subsample_per_class(ds, per_class, random_state=random_state)
    info = offline_dataset_info(name)
    return TargetTask(name, tuple(ds.classes), info["domain"], info["task"], ds, tuple(int(i) for i in idx))
