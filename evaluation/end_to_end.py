"""The whole EMMS chain in one call: images -> features -> label embeddings -> scores -> tables.

Used by ``run_default.py`` (the embedded offline benchmark) and ``select_models.py`` (rank models for
the user's own images). Every stage goes through the on-disk cache of :mod:`data.cache`, so an
interrupted run resumes where it stopped and a re-run with more models or metrics computes only what
is missing:

1. :func:`models.pipeline.extract_to_cache` — features (N×D), labels (N) and source-head
   probabilities (N×Cs, models with a head) of every (model, dataset);
2. :func:`Label_embedding.embed.write_label_embeddings` — class-name embeddings (C×E) per text
   encoder; the evaluation indexes them by the labels to get the per-sample F-labels (N×E×K);
3. :func:`evaluation.evaluate` — every metric on every (dataset, model), resumable, timed, judged
   against ``ground_truth`` when given.

Every cache entry carries a provenance record (``data.cache``; ``docs/data.md``, "Cache provenance"):
a stage reuses an entry only when it was made from the same data (content fingerprint), model and
preprocessing, encoder, templates and class names, and the scores only while their input files'
hashes and the metric's code are unchanged; anything else is recomputed with one note saying why.
The evaluation checks that the features it scores come from the data extracted in this call
(``expected_fingerprints``), so a concurrent run writing other images under the same dataset name
is an error, not a silently wrong ranking.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Optional, Sequence

from .runner import EvaluationResult, evaluate

__all__ = ["score_models"]


def score_models(model_names: Sequence[str], dataset_names: Sequence[str], *,
                 cache_dir: str | os.PathLike, results_dir: str | os.PathLike,
                 encoders: Sequence[str] = ("minilm",), metrics: Optional[Sequence[str]] = None,
                 ground_truth: Optional[Mapping[str, Mapping[str, float]]] = None, group: Optional[str] = None,
                 split: str = "train", n_per_class: Optional[int] = None,
                 data_root: str | os.PathLike | None = None, weights_dir: str | os.PathLike | None = None,
                 dataset_factory: Optional[Callable[[str], object]] = None,
                 classnames: Optional[Mapping[str, Sequence[str]]] = None,
                 templates: str | Sequence[str] = "photo", batch_size: int = 64, device=None,
                 random_state: int = 0, progress: bool = True,
                 log: Callable[[str], None] = print, n_jobs: int = 1) -> EvaluationResult:
    """Extract, embed and score; returns the :class:`EvaluationResult` (tables via :mod:`evaluation.tables`).

    Parameters
    ----------
    model_names, dataset_names : registry names (``models.list_models()``, ``data.list_datasets()``);
        ``dataset_factory(name) -> Dataset`` replaces the dataset registry (e.g. a user folder).
    cache_dir, results_dir : the feature cache root and the score/results root.
    encoders : text encoders of the label embeddings (``Label_embedding.list_text_encoders()``).
    metrics : metric names (None = every registered metric).
    ground_truth : ``{dataset: {model: fine-tuned accuracy}}`` or None (rankings + agreement only).
    split, n_per_class, random_state : which images are scored (per-class subsample, seeded).
    classnames : ``{dataset: class names}`` overriding ``data.get_classnames`` (user data).
    templates : prompt templates of the class-name embeddings (``Label_embedding.embed``).
    n_jobs : models scored at once in worker processes (:func:`evaluation.evaluate`).
    """
    from Label_embedding.embed import write_label_embeddings
    from models.pipeline import extract_to_cache

    if not model_names:
        raise ValueError("no models to score")
    if not dataset_names:
        raise ValueError("no datasets to score on")
    if not encoders:
        raise ValueError("give at least one text encoder for the label embeddings")
    pairs = extract_to_cache(list(model_names), list(dataset_names), cache_dir=cache_dir, split=split,
                             data_root=data_root, weights_dir=weights_dir, n_per_class=n_per_class,
                             random_state=random_state, batch_size=batch_size, device=device, progress=progress,
                             dataset_factory=dataset_factory, log=log)
    fingerprints = {r.dataset: r.fingerprint for r in pairs if r.fingerprint is not None}
    for d in dataset_names:
        names = None if classnames is None else classnames.get(d)
        for enc in encoders:
            write_label_embeddings(d, enc, cache_dir, classnames=names, templates=templates, progress=progress,
                                   log=log)
    return evaluate(cache_dir, results_dir, datasets=list(dataset_names), models=list(model_names),
                    metrics=metrics, encoders=tuple(encoders), ground_truth=ground_truth, group=group,
                    random_state=random_state, progress=progress, log=log, n_jobs=n_jobs,
                    expected_fingerprints=fingerprints)
