"""Datasets of the project behind one registry (see ``docs/data.md``).

``get_dataset(name, split, root, transform)`` builds any registered dataset; ``list_datasets(kind)``
lists them (kinds ``classification``, ``caption``, ``offline``); ``get_classnames(name)`` gives the
class names in label order; ``subsample_per_class`` selects a deterministic per-class subset.
The on-disk cache layout shared by the pipelines lives in :mod:`data.cache`.
"""
from . import cache
from .registry import (DATA_ROOT_ENV, DATASETS, KINDS, DatasetNotFoundError, DatasetSpec, get_classnames,
                       get_dataset, get_dataset_spec, list_datasets, register_dataset)
from .splits import stratified_split, subsample_per_class
from . import captioning, offline, vision  # noqa: F401  (register the datasets)

__all__ = ["cache", "DATA_ROOT_ENV", "DATASETS", "KINDS", "DatasetNotFoundError", "DatasetSpec", "get_classnames",
           "get_dataset", "get_dataset_spec", "list_datasets", "register_dataset", "stratified_split",
           "subsample_per_class"]
