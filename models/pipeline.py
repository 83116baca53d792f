"""Extract a list of models over a list of datasets into the on-disk cache (``data.cache`` layout).

One ``.npy`` per (model, dataset), written atomically, so a killed run loses nothing already
written and a re-run skips every (model, dataset) whose features file exists. The source
probabilities are written BEFORE the features, so an existing features file means the pair is
complete. ``labels/{dataset}.npy`` (and ``captions/{dataset}.json`` for captioning sets) is written
once; a later extraction that yields different labels raises :class:`CacheMismatchError` (the
dataset, split or subsample changed: use a fresh cache directory).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from data.cache import CacheLayout, atomic_save_json, atomic_save_npy

from .base import FeatureModel
from .extraction import extract
from .registry import create_model, model_info

__all__ = ["CacheMismatchError", "PairResult", "prepare_dataset", "extract_to_cache"]


class CacheMismatchError(ValueError):
    """A cache file disagrees with what this run produced (labels / captions of a dataset)."""


@dataclass(frozen=True)
class PairResult:
    model: str
    dataset: str
    status: str          # "extracted" or "skipped"
    n: int | None        # rows written (None when skipped)
    seconds: float | None


def prepare_dataset(name: str, *, split: str = "train", data_root: str | os.PathLike | None = None,
                    n_per_class: int | None = None, random_state: int = 0) -> Dataset:
    """``data.get_dataset(name, split, root)``, optionally reduced to ``n_per_class`` items per class
    (``data.subsample_per_class`` with ``random_state``; captioning sets, whose items are their own
    class, are never subsampled)."""
    import data  # the dataset registry (imported lazily: the model registry does not need it)

    dataset = data.get_dataset(name, split=split, root=data_root)
    if n_per_class is None or data.get_dataset_spec(name).kind == "caption":
        return dataset
    idx = data.subsample_per_class(dataset, n_per_class, random_state=random_state)
    return Subset(dataset, [int(i) for i in idx])


def _check_or_write_labels(layout: CacheLayout, dataset: str, labels: np.ndarray) -> None:
    path = layout.labels(dataset)
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape != labels.shape or not np.array_equal(cached, labels):
            raise CacheMismatchError(
                f"{path} holds {cached.shape[0]} labels that differ from the {labels.shape[0]} labels "
                f"extracted now for dataset {dataset!r} (different split / subsample / data?). "
                "Use a fresh cache directory or delete the stale files of this dataset.")
    else:
        atomic_save_npy(path, labels)


def _check_or_write_captions(layout: CacheLayout, dataset: str, captions: list[str]) -> None:
    path = layout.captions(dataset)
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached != captions:
            raise CacheMismatchError(f"{path} holds captions that differ from those of dataset {dataset!r} now; "
                                     "use a fresh cache directory")
    else:
        atomic_save_json(path, captions)


def extract_to_cache(model_names: Sequence[str], dataset_names: Sequence[str], *,
                     cache_dir: str | os.PathLike, split: str = "train",
                     data_root: str | os.PathLike | None = None,
                     weights_dir: str | os.PathLike | None = None, n_per_class: int | None = None,
                     random_state: int = 0, batch_size: int = 64, num_workers: int = 0,
                     device=None, progress: bool = True,
                     dataset_factory: Callable[[str], Dataset] | None = None,
                     model_factory: Callable[[str], FeatureModel] | None = None) -> list[PairResult]:
    """Fill ``cache_dir`` with features / source_probs / labels of every (model, dataset) pair.

    Models are loaded one at a time (outer loop) and only when at least one of their datasets is
    missing. ``dataset_factory(name)`` / ``model_factory(name)`` replace the registries (tests,
    custom data); by default datasets come from :func:`prepare_dataset` and models from
    :func:`models.create_model`.
    """
    if not model_names or not dataset_names:
        raise ValueError("give at least one model and one dataset")
    if model_factory is None:
        for name in model_names:
            model_info(name)  # fail fast on unknown names, before any work
        model_factory = lambda name: create_model(name, weights_dir=weights_dir, device=device)  # noqa: E731
    if dataset_factory is None:
        dataset_factory = lambda name: prepare_dataset(name, split=split, data_root=data_root,  # noqa: E731
                                                       n_per_class=n_per_class, random_state=random_state)
    layout = CacheLayout(cache_dir)
    datasets: dict[str, Dataset] = {}
    results: list[PairResult] = []
    for model_name in model_names:
        todo = [d for d in dataset_names if not layout.features(d, model_name).is_file()]
        results += [PairResult(model_name, d, "skipped", None, None) for d in dataset_names if d not in todo]
        if not todo:
            continue
        model = model_factory(model_name)
        for ds_name in todo:
            if ds_name not in datasets:
                datasets[ds_name] = dataset_factory(ds_name)
            t0 = time.perf_counter()
            out = extract(model, datasets[ds_name], batch_size=batch_size, num_workers=num_workers,
                          progress=progress)
            _check_or_write_labels(layout, ds_name, out["labels"])
            if "captions" in out:
                _check_or_write_captions(layout, ds_name, out["captions"])
            if out["source_probs"] is not None:
                atomic_save_npy(layout.source_probs(ds_name, model_name), out["source_probs"])
            atomic_save_npy(layout.features(ds_name, model_name), out["features"])
            results.append(PairResult(model_name, ds_name, "extracted", int(out["features"].shape[0]),
                                      time.perf_counter() - t0))
            if progress:
                print(f"[extract] {model_name} on {ds_name}: {out['features'].shape} "
                      f"in {results[-1].seconds:.1f}s -> {layout.features(ds_name, model_name)}")
        del model
    return results
