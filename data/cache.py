"""The on-disk cache layout shared by the extraction and evaluation scripts.

Every array is one ``.npy`` file, written atomically (temporary file in the same directory, then
``os.replace``), so a killed run never leaves a half-written file and a re-run skips what exists::

    {root}/
      labels/{dataset}.npy                         (N,)    int64   target labels, sample order shared
                                                                   by every model of the dataset
      features/{dataset}/{model}.npy               (N, D)  float32 penultimate features of `model`
      source_probs/{dataset}/{model}.npy           (N, Cs) float32 softmax of the model's own source
                                                                   head (LEEP; argmax gives NCE's z)
      label_embeddings/{dataset}/{encoder}.npy     (C, E)  float32 class-name embedding, row c for
                                                                   class id c (per-sample F-labels
                                                                   are rows indexed by the labels)
      caption_embeddings/{dataset}/{encoder}.npy   (N, E)  float32 per-sample caption embedding
      captions/{dataset}.json                      list of N caption strings (captioning sets)

Sample order: extraction iterates the dataset in a fixed order (after an optional per-class
subsample with a fixed seed), so row i of every file of one dataset is the same image.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CacheLayout", "atomic_write", "atomic_save_npy", "atomic_save_json", "load_npy", "CacheMissingError"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class CacheMissingError(FileNotFoundError):
    """A cache file the caller needs does not exist (the message names it and the script that makes it)."""


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(fh)`` on a temporary binary file next to ``path``, then rename it onto ``path``:
    readers see either the old file or the complete new one, never a partial write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save ``array`` to ``path`` (.npy) atomically; parent folders are created."""
    path = Path(path)
    arr = np.asarray(array)
    atomic_write(path, lambda fh: np.save(fh, arr, allow_pickle=False))
    return path


def atomic_save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    path = Path(path)
    data = json.dumps(obj, indent=2, sort_keys=False).encode()
    atomic_write(path, lambda fh: fh.write(data))
    return path


def load_npy(path: str | os.PathLike, *, hint: str = "") -> np.ndarray:
    """Load a cache file, failing with a message that names the missing path (and how to make it)."""
    path = Path(path)
    if not path.is_file():
        msg = f"missing cache file: {path}"
        if hint:
            msg += f" ({hint})"
        raise CacheMissingError(msg)
    return np.load(path, allow_pickle=False)


@dataclass(frozen=True)
class CacheLayout:
    """Paths of every cache file under one root directory (see the module docstring)."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    # -- paths ---------------------------------------------------------------------------------
    def labels(self, dataset: str) -> Path:
        return self.root / "labels" / f"{dataset}.npy"

    def features(self, dataset: str, model: str) -> Path:
        return self.root / "features" / dataset / f"{model}.npy"

    def source_probs(self, dataset: str, model: str) -> Path:
        return self.root / "source_probs" / dataset / f"{model}.npy"

    def label_embedding(self, dataset: str, encoder: str) -> Path:
        return self.root / "label_embeddings" / dataset / f"{encoder}.npy"

    def caption_embedding(self, dataset: str, encoder: str) -> Path:
        return self.root / "caption_embeddings" / dataset / f"{encoder}.npy"

    def captions(self, dataset: str) -> Path:
        return self.root / "captions" / f"{dataset}.json"

    # -- loaders with clear errors --------------------------------------------------------------
    def load_labels(self, dataset: str) -> np.ndarray:
        return load_npy(self.labels(dataset), hint="run a forward_feature_*.py script for this dataset")

    def load_features(self, dataset: str, model: str) -> np.ndarray:
        return load_npy(self.features(dataset, model), hint=f"extract features of model {model!r}")

    def load_source_probs(self, dataset: str, model: str) -> np.ndarray:
        return load_npy(self.source_probs(dataset, model),
                        hint=f"model {model!r} has no source head or its probabilities were not extracted")

    def load_label_embedding(self, dataset: str, encoder: str) -> np.ndarray:
        return load_npy(self.label_embedding(dataset, encoder),
                        hint=f"run Label_embedding/ with encoder {encoder!r}")

    def load_caption_embedding(self, dataset: str, encoder: str) -> np.ndarray:
        return load_npy(self.caption_embedding(dataset, encoder),
                        hint=f"run Label_embedding/*_sentence.py with encoder {encoder!r}")
