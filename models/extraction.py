"""Batched feature extraction of one model over one dataset.

For a dataset of N items ``(image, y)`` and a :class:`~models.base.FeatureModel` phi with source
head g (Cs classes), :func:`extract` returns

* ``features``     N x D  float32, phi(x_i),
* ``labels``       N      int64, y_i (for captioning items, whose ``y`` is a caption string, the
                          item's position 0..N-1, as ``data.CaptionDataset.targets``),
* ``source_probs`` N x Cs float32, softmax(g(phi(x_i))), or ``None`` when the model has no head,
* ``captions``     list of N strings (only when the items carry captions).

Row i of every array is item i of the dataset (iteration order, no shuffling).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .base import FeatureModel, Preprocess

__all__ = ["extract", "BatchCollator"]


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


def extract(model: FeatureModel, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0,
            progress: bool = True) -> dict[str, Any]:
    """Run ``model`` over ``dataset`` in order; see the module docstring for the returned arrays.

    Caption models (``model.needs_captions``) are run under teacher forcing with each item's caption,
    so their dataset must yield ``(image, caption)`` pairs.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot extract features of an empty dataset")
    needs_captions = getattr(model, "needs_captions", False)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=BatchCollator(model.preprocess))
    feats, probs, labels, captions = [], [], [], []
    has_captions = None
    for x, ys in tqdm(loader, desc=f"{model.name}", total=len(loader), disable=not progress, leave=False):
        batch_labels, batch_captions = _split_targets(ys, len(labels))
        if has_captions is None:
            has_captions = batch_captions is not None
        elif has_captions != (batch_captions is not None):
            raise ValueError("dataset mixes caption strings and int labels")
        if needs_captions:
            if batch_captions is None:
                raise ValueError(f"{model.name} is a captioning model: the dataset must yield (image, caption)")
            f, logits = model.features_and_source_logits(x, batch_captions)
        else:
            f, logits = model.features_and_source_logits(x)
        feats.append(f.cpu().numpy().astype(np.float32, copy=False))
        if logits is not None:
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        labels.extend(batch_labels)
        if batch_captions is not None:
            captions.extend(batch_captions)
    out: dict[str, Any] = {
        "features": np.concatenate(feats).astype(np.float32, copy=False),
        "labels": np.asarray(labels, dtype=np.int64),
        "source_probs": np.concatenate(probs).astype(np.float32, copy=False) if probs else None,
    }
    if has_captions:
        out["captions"] = captions
    if out["features"].shape[0] != n:
        raise RuntimeError(f"extracted {out['features'].shape[0]} rows for a dataset of {n} items")
    return out
