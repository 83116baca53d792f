"""Batched feature extraction of one model over one dataset.

For a dataset of N items ``(image, y)`` and a :class:`~models.base.FeatureModel` phi with source
head g (Cs classes), :func:`extract` returns

* ``features``     N x D  float32, phi(x_i),
* ``labels``       N      int64, y_i (for captioning items, whose ``y`` is a caption string, the
                          item's position 0..N-1, as ``data.CaptionDataset.targets``),
* ``source_probs`` N x Cs float32, softmax(g(phi(x_i))), or ``None`` when the model has no head,
* ``captions``     list of N strings (only when the items carry captions).

Row i of every array is item i of the dataset (iteration order, no shuffling).
:func:`extract_multi` runs a :class:`~models.base.MultiOutputFeatureModel` once over the dataset
and returns one such dict per candidate it serves. Batches run under ``torch.inference_mode``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .base import FeatureModel, MultiOutputFeatureModel, Preprocess

__all__ = ["extract", "extract_multi", "BatchCollator"]


class BatchCollator:
    """DataLoader ``collate_fn``: PIL images go through ``preprocess`` (already-transformed 3 x H x W
    tensors are used as they are); the second item element is an int label or a caption string."""

    def __init__(self, preprocess: Preprocess):
        self.preprocess = preprocess

    def __call__(self, items: Sequence[tuple[Any, Any]]) -> tuple[torch.Tensor, list]:
        images, ys = [], []
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError("dataset items must be (image, label) or (image, caption) pairs")
            image, y = item
            if isinstance(image, Image.Image):
                image = self.preprocess(image)
            elif not isinstance(image, torch.Tensor):
                raise ValueError(f"dataset images must be PIL images or tensors, got {type(image).__name__}")
            images.append(image)
            ys.append(y)
        return torch.stack(images), ys


def _split_targets(ys: list, offset: int) -> tuple[list[int], list[str] | None]:
    if all(isinstance(y, str) for y in ys):
        return list(range(offset, offset + len(ys))), list(ys)
    labels = []
    for y in ys:
        if isinstance(y, torch.Tensor):
            if y.numel() != 1:
                raise ValueError(f"labels must be single class ids, got a tensor of shape {tuple(y.shape)}")
            y = y.item()
        if isinstance(y, bool) or not isinstance(y, (int, np.integer)):
            raise ValueError(f"labels must be int class ids or caption strings, got {type(y).__name__}")
        labels.append(int(y))
    return labels, None


def _validate_loader_args(batch_size, num_workers) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")


def _run(forward: Callable[[torch.Tensor, list | None], dict], names: Sequence[str], preprocess: Preprocess,
         dataset: Dataset, *, desc: str, needs_captions: bool, batch_size: int, num_workers: int,
         progress: bool) -> dict[str, dict[str, Any]]:
    """The batch loop shared by :func:`extract` and :func:`extract_multi`: ``forward(x, captions)``
    -> ``{name: (features, logits or None)}``, run under ``torch.inference_mode``."""
    _validate_loader_args(batch_size, num_workers)
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot extract features of an empty dataset")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=BatchCollator(preprocess))
    feats: dict[str, list] = {k: [] for k in names}
    probs: dict[str, list] = {k: [] for k in names}
    labels, captions = [], []
    has_captions = None
    for x, ys in tqdm(loader, desc=desc, total=len(loader), disable=not progress, leave=False):
        batch_labels, batch_captions = _split_targets(ys, len(labels))
        if has_captions is None:
            has_captions = batch_captions is not None
        elif has_captions != (batch_captions is not None):
            raise ValueError("dataset mixes caption strings and int labels")
        if needs_captions and batch_captions is None:
            raise ValueError(f"{desc} is a captioning model: the dataset must yield (image, caption)")
        with torch.inference_mode():
            outputs = forward(x, batch_captions)
            for key in names:
                f, logits = outputs[key]
                feats[key].append(f.cpu().numpy().astype(np.float32, copy=False))
                if logits is not None:
                    probs[key].append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        labels.extend(batch_labels)
        if batch_captions is not None:
            captions.extend(batch_captions)
    label_array = np.asarray(labels, dtype=np.int64)
    result = {}
    for key in names:
        out: dict[str, Any] = {
            "features": np.concatenate(feats[key]).astype(np.float32, copy=False),
            "labels": label_array.copy(),
            "source_probs": np.concatenate(probs[key]).astype(np.float32, copy=False) if probs[key] else None,
        }
        if has_captions:
            out["captions"] = list(captions)
        if out["features"].shape[0] != n:
            raise RuntimeError(f"extracted {out['features'].shape[0]} rows for a dataset of {n} items")
        result[key] = out
    return result


def extract(model: FeatureModel, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0,
            progress: bool = True) -> dict[str, Any]:
    """Run ``model`` over ``dataset`` in order; see the module docstring for the returned arrays.

    Caption models (``model.needs_captions``) are run under teacher forcing with each item's caption,
    so their dataset must yield ``(image, caption)`` pairs.
    """
    needs_captions = getattr(model, "needs_captions", False)

    def forward(x, captions):
        out = model.features_and_source_logits(x, captions) if needs_captions else model.features_and_source_logits(x)
        return {model.name: out}

    return _run(forward, [model.name], model.preprocess, dataset, desc=model.name, needs_captions=needs_captions,
                batch_size=batch_size, num_workers=num_workers, progress=progress)[model.name]


def extract_multi(model: MultiOutputFeatureModel, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0,
                  progress: bool = True) -> dict[str, dict[str, Any]]:
    """ONE pass of a multi-output model over ``dataset``: ``{candidate: extract-like dict}`` (the same
    arrays :func:`extract` returns for ``models.create_model(candidate)``)."""
    if not isinstance(model, MultiOutputFeatureModel):
        raise ValueError(f"extract_multi needs a MultiOutputFeatureModel, got {type(model).__name__}")
    return _run(lambda x, captions: model.features_and_source_logits_multi(x), model.names, model.preprocess,
                dataset, desc=f"{model.name} ({len(model.names)} candidates)", needs_captions=False,
                batch_size=batch_size, num_workers=num_workers, progress=progress)
