"""Transferability metrics: score how well a pre-trained model's features transfer to a target task.

One module per metric (the math, with shapes, is in each module's docstring; departures from the
published reference code are stated there). Every metric returns a float, higher = better transfer,
computes in float64 and never modifies its inputs. Bad input raises ``ValueError`` naming the problem.

Scripts pick metrics by name through the registry::

    fn = metrics.get_metric("emms")
    score = fn(**{k: inputs[k] for k in fn.requires})

EMMS has four registry names: ``emms`` is ``emms(..., ridge="ledoit_wolf", standardise=False)`` (the
w-step regresses with the Ledoit-Wolf covariance of the centred features: defined and discriminative
for every N and D, -> the paper's value for N >> D; chosen by a small-sample study, docs/metrics.md);
``emms_evidence`` is ``emms(..., ridge="auto")`` (evidence-chosen ridge, the former default; exactly 0
for several models when D >= N); ``emms_ols`` is the paper's unregularised converged EMMS
(``ValueError`` when rank(X) >= N - 1, where it is 0 for every model); ``emms_onestep`` is the
published one-sweep value. :func:`emms_cv` gives the out-of-sample (exact LOO / GCV) variants.
Metrics that form Gram matrices work on the N x N side when N <= D.

Scoring one model with several metrics: prepare its features once, so the Gram matrices and their
eigendecompositions are computed once and shared (``features`` of every metric accepts an array or
a :class:`PreparedFeatures`; ``label_embeddings`` an array or a :class:`PreparedLabelEmbeddings`)::

    F = metrics.prepare_features(X)
    scores = {name: fn(**{"features": F, "labels": y}) for name, fn in ...}

Backends: ``logme``, the ``emms`` variants, ``transrate``, ``hscore(_reg)``, ``leep`` and ``nce`` take
``backend="torch", device="cuda"`` (or a :func:`get_backend` object): the heavy linear algebra runs in
PyTorch, float64 by default, same numbers to rounding (:mod:`metrics._backend`).

Rank measures (how a metric is judged against fine-tuning ground truth) live in
:mod:`metrics.ranking`. See ``docs/metrics.md``.
"""
from ._validation import DegenerateInputError
from ._prepared import PreparedFeatures, PreparedLabelEmbeddings, prepare_features, prepare_label_embeddings
from .registry import CANONICAL_INPUTS, METRICS, get_metric, list_metrics, register_metric
from ._backend import BACKENDS, Backend, auto_backend, get_backend, list_backends, resolve_backend
from .emms import emms, emms_auto, emms_cv, emms_default, emms_ols, emms_onestep
from .logme import logme, max_log_evidence
from .leep import leep
from .nce import nce, nce_from_probs
from .transrate import coding_rate, transrate
from .hscore import hscore, hscore_regularized
from .sfda import sfda
from .parc import parc
from .nleep import nleep
from .flabel import logme_flabel, transrate_flabel
from . import ranking

__all__ = [
    "BACKENDS", "Backend", "auto_backend", "get_backend", "list_backends", "resolve_backend",
    "CANONICAL_INPUTS", "DegenerateInputError", "PreparedFeatures", "PreparedLabelEmbeddings",
    "prepare_features", "prepare_label_embeddings", "METRICS", "get_metric", "list_metrics", "register_metric",
    "emms", "emms_auto", "emms_cv", "emms_default", "emms_ols", "emms_onestep", "logme", "max_log_evidence", "leep", "nce", "nce_from_probs",
    "transrate", "coding_rate", "hscore", "hscore_regularized", "sfda", "parc", "nleep",
    "logme_flabel", "transrate_flabel", "ranking",
]
