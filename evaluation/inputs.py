"""Assemble each metric's inputs for one (dataset, model) from the shared feature caches.

Every metric of :mod:`metrics` declares ``fn.requires``, a tuple drawn from the canonical input
names :data:`INPUT_NAMES`, and is called as ``fn(**{k: inputs[k] for k in fn.requires})``:

==================== =========== ===================================================================
name                 shape       cache file (:class:`data.cache.CacheLayout`)
==================== =========== ===================================================================
``features``         (N, D)      ``features/{dataset}/{model}.npy``
``labels``           (N,) int    ``labels/{dataset}.npy``
``label_embeddings`` (N, E, K)   one (.., E_k) file per encoder k, made per-sample by the label source
``source_probs``     (N, Cs)     ``source_probs/{dataset}/{model}.npy``
==================== =========== ===================================================================

Label sources (registry :data:`LABEL_SOURCES`) say where the per-sample label embedding of encoder
``k`` comes from:

* ``"class_names"`` (classification, EMMS's "F-labels"): ``label_embeddings/{dataset}/{k}.npy`` is a
  (C, E_k) table of class-name embeddings; sample i gets row ``labels[i]``, i.e. ``Y_k = T_k[y]``.
* ``"captions"`` (captioning): ``caption_embeddings/{dataset}/{k}.npy`` already holds one (N, E_k)
  embedding per sample (its caption).

The K per-encoder (N, E_k) matrices are stacked on a last axis into (N, E, K). Equal widths stack
unchanged; different widths (e.g. CLIP 1024 with MiniLM 384) go through
``Label_embedding.stack_label_embeddings(..., method=stack_method, random_state=random_state)``.

Arrays are loaded once per dataset (labels, label embeddings) or per model (features, source
probabilities), validated (shapes, finiteness, sample counts) and handed to the metrics READ-ONLY, so a
metric that writes into its inputs fails loudly instead of corrupting the next metric's inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

import metrics as metrics_lib
from common import Registry
from data.cache import CacheLayout, load_npy

__all__ = [
    "INPUT_NAMES",
    "LabelSource",
    "LABEL_SOURCES",
    "get_label_source",
    "stack_encoder_embeddings",
    "DatasetInputs",
]

#: The canonical keyword names a metric may require (the metrics-library contract).
INPUT_NAMES: Tuple[str, ...] = ("features", "labels", "label_embeddings", "source_probs")


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or inf values")


@dataclass(frozen=True)
class LabelSource:
    """Where the per-sample label embedding of one encoder comes from.

    ``path(layout, dataset, encoder)`` names the cache file; ``per_sample(table, labels)`` turns the
    loaded array into the (N, E_k) per-sample matrix; ``needs_labels`` says whether that uses labels.
    """

    name: str
    path: Callable[[CacheLayout, str, str], Path]
    needs_labels: bool
    description: str

    def per_sample(self, table: np.ndarray, labels: np.ndarray | None, *, where: str) -> np.ndarray:
        if table.ndim != 2:
            raise ValueError(f"{where}: expected a 2-D array, got shape {table.shape}")
        _check_finite(table, where)
        if not self.needs_labels:
            return table
        if labels.min() < 0 or labels.max() >= table.shape[0]:
            raise ValueError(f"{where}: has {table.shape[0]} class rows but the labels range over "
                             f"[{labels.min()}, {labels.max()}]")
        return table[labels]


#: Registry of label sources (name -> :class:`LabelSource`).
LABEL_SOURCES: Registry[LabelSource] = Registry("label source")
LABEL_SOURCES.add("class_names", LabelSource(
    name="class_names",
    path=lambda layout, dataset, encoder: layout.label_embedding(dataset, encoder),
    needs_labels=True,
    description="(C, E) class-name embedding table indexed by the labels",
))
LABEL_SOURCES.add("captions", LabelSource(
    name="captions",
    path=lambda layout, dataset, encoder: layout.caption_embedding(dataset, encoder),
    needs_labels=False,
    description="(N, E) per-sample caption embeddings",
))


def get_label_source(name: str) -> LabelSource:
    """The label source ``name``; ``KeyError`` listing the available ones."""
    return LABEL_SOURCES[name]


def stack_encoder_embeddings(embeddings: Sequence[np.ndarray], *, encoders: Sequence[str],
                             method: str = "project", random_state: int = 0) -> np.ndarray:
    """Stack K per-sample embeddings (N, E_k) into one (N, E, K) array.

    Equal widths: ``np.stack(..., axis=-1)`` (no change to the values). Different widths: delegated
    to ``Label_embedding.stack_label_embeddings`` (``method`` / ``random_state`` are passed on).
    """
    if len(embeddings) == 0:
        raise ValueError("no label embeddings to stack: give at least one encoder")
    if len({e.shape[0] for e in embeddings}) != 1:
        raise ValueError("label embeddings of encoders " + ", ".join(
            f"{k} ({e.shape[0]} rows)" for k, e in zip(encoders, embeddings)) + " have different sample counts")
    widths = [e.shape[1] for e in embeddings]
    if len(set(widths)) == 1:
        return np.stack(embeddings, axis=-1)
    from Label_embedding import stack_label_embeddings      # local import: Label_embedding imports torch
    return np.asarray(stack_label_embeddings(list(embeddings), method=method, random_state=random_state))


class DatasetInputs:
    """Lazily loaded, validated, read-only inputs of one dataset for every model.

    Parameters
    ----------
    layout : CacheLayout of the cache root.
    dataset : dataset name (a sub-folder / file stem of the layout).
    encoders : text encoders whose label embeddings are stacked (order = the K axis).
    label_source : key of :data:`LABEL_SOURCES` (``"class_names"`` or ``"captions"``).
    stack_method, random_state : passed to :func:`stack_encoder_embeddings` for mixed widths.
    """

    def __init__(self, layout: CacheLayout, dataset: str, *, encoders: Sequence[str] = (),
                 label_source: str = "class_names", stack_method: str = "project", random_state: int = 0):
        self.layout = layout
        self.dataset = dataset
        self.encoders = tuple(encoders)
        self.label_source = get_label_source(label_source)
        self.stack_method = stack_method
        self.random_state = int(random_state)
        self._labels: np.ndarray | None = None
        self._label_embeddings: np.ndarray | None = None
        self._prepared_embeddings = None
        self._model: str | None = None
        self._model_arrays: Dict[str, np.ndarray] = {}

    # -- which files an input needs ----------------------------------------------------------
    def paths(self, name: str, model: str) -> List[Path]:
        """Cache files the input ``name`` of ``model`` is read from."""
        return self._registry(name)[0](model)

    def _label_embedding_paths(self, _model: str) -> List[Path]:
        files = [self.label_source.path(self.layout, self.dataset, k) for k in self.encoders]
        if self.label_source.needs_labels:
            files.append(self.layout.labels(self.dataset))
        return files

    def _registry(self, name: str) -> Tuple[Callable[[str], List[Path]], Callable[[str], np.ndarray]]:
        """name -> (paths of model, loader of model): the one place that maps inputs to cache files."""
        registry = {
            "features": (lambda m: [self.layout.features(self.dataset, m)], self.features),
            "labels": (lambda m: [self.layout.labels(self.dataset)], lambda m: self.labels()),
            "label_embeddings": (self._label_embedding_paths, lambda m: self.label_embeddings()),
            "source_probs": (lambda m: [self.layout.source_probs(self.dataset, m)], self.source_probs),
        }
        if name not in registry:
            raise ValueError(f"unknown input name {name!r}; metrics may require only {INPUT_NAMES}")
        return registry[name]

    def input_files(self, requires: Sequence[str], model: str) -> List[Path]:
        """Every cache file the inputs ``requires`` of ``model`` are read from (deduplicated, in order)."""
        seen: Dict[Path, None] = {}
        for name in requires:
            for p in self.paths(name, model):
                seen.setdefault(p, None)
        return list(seen)

    # -- loaders -----------------------------------------------------------------------------
    def _n_reference(self) -> int | None:
        if self._labels is not None:
            return self._labels.shape[0]
        if self._label_embeddings is not None:
            return self._label_embeddings.shape[0]
        arrays = list(self._model_arrays.values())
        return arrays[0].shape[0] if arrays else None

    def _check_rows(self, n: int, what: str) -> None:
        ref = self._n_reference()
        if ref is not None and n != ref:
            raise ValueError(f"{what} has {n} samples but other inputs of dataset {self.dataset!r} have {ref}")

    def labels(self) -> np.ndarray:
        if self._labels is None:
            y = self.layout.load_labels(self.dataset)
            where = f"labels of {self.dataset!r} ({self.layout.labels(self.dataset)})"
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"{where}: expected a 1-D integer array, got {y.dtype} {y.shape}")
            self._check_rows(y.shape[0], where)
            self._labels = _readonly(y)
        return self._labels

    def label_embeddings(self) -> np.ndarray:
        if self._label_embeddings is None:
            if not self.encoders:
                raise ValueError("a metric requires label_embeddings but no text encoders were given")
            labels = self.labels() if self.label_source.needs_labels else None
            per_encoder = []
            for k in self.encoders:
                path = self.label_source.path(self.layout, self.dataset, k)
                table = load_npy(path, hint=f"label embedding of encoder {k!r} ({self.label_source.description})")
                per_encoder.append(self.label_source.per_sample(table, labels, where=f"{path}"))
            stacked = stack_encoder_embeddings(per_encoder, encoders=self.encoders, method=self.stack_method,
                                               random_state=self.random_state)
            self._check_rows(stacked.shape[0], f"label embeddings of {self.dataset!r}")
            self._label_embeddings = _readonly(stacked)
        return self._label_embeddings

    def _model_array(self, name: str, model: str, path: Path, loader: Callable[[], np.ndarray]) -> np.ndarray:
        if self._model != model:  # keep only one model's arrays in memory
            self._model, self._model_arrays = model, {}
        if name not in self._model_arrays:
            arr = loader()
            where = f"{name} of model {model!r} on {self.dataset!r} ({path})"
            if arr.ndim != 2:
                raise ValueError(f"{where}: expected a 2-D array, got shape {arr.shape}")
            _check_finite(arr, where)
            self._check_rows(arr.shape[0], where)
            self._model_arrays[name] = _readonly(arr)
        return self._model_arrays[name]

    def features(self, model: str) -> np.ndarray:
        return self._model_array("features", model, self.layout.features(self.dataset, model),
                                 lambda: self.layout.load_features(self.dataset, model))

    def source_probs(self, model: str) -> np.ndarray:
        return self._model_array("source_probs", model, self.layout.source_probs(self.dataset, model),
                                 lambda: self.layout.load_source_probs(self.dataset, model))

    def get(self, name: str, model: str) -> np.ndarray:
        """The input ``name`` (one of :data:`INPUT_NAMES`) for ``model``."""
        return self._registry(name)[1](model)

    def for_metric(self, requires: Sequence[str], model: str, *, prepared: bool = False) -> Dict[str, object]:
        """``{name: array}`` for exactly the inputs in ``requires`` (only those are loaded).

        ``prepared=True``: ``features`` as a :class:`metrics.PreparedFeatures` (one per model, kept
        while the model is current) and ``label_embeddings`` as a
        :class:`metrics.PreparedLabelEmbeddings` (one per dataset), so the metrics of one model
        share Gram matrices and eigendecompositions instead of recomputing them.
        """
        out = {name: self.get(name, model) for name in requires}
        if prepared:
            if "features" in out:
                out["features"] = self._prepared("features", model, metrics_lib.prepare_features)
            if "label_embeddings" in out:
                if self._prepared_embeddings is None:
                    self._prepared_embeddings = metrics_lib.prepare_label_embeddings(out["label_embeddings"])
                out["label_embeddings"] = self._prepared_embeddings
        return out

    def _prepared(self, name: str, model: str, prepare: Callable[[np.ndarray], object]):
        key = f"{name}:prepared"
        array = self.get(name, model)              # makes ``model`` current (drops other models' arrays)
        if key not in self._model_arrays:
            self._model_arrays[key] = prepare(array)
        return self._model_arrays[key]

