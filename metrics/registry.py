"""Name -> metric registry used by the evaluation scripts.

Contract (relied upon by :mod:`evaluation`): every registered callable ``fn`` has an attribute
``fn.requires``, a tuple drawn from :data:`CANONICAL_INPUTS`, and is called as::

    fn(**{k: inputs[k] for k in fn.requires})

with ``features`` (N, D) float, ``labels`` (N,) int, ``label_embeddings`` (N, E, K) float (class
embeddings already indexed by the labels, stacked over K encoders) and ``source_probs`` (N, Cs)
softmax outputs. It returns a float; higher means better expected transfer. ``features`` may also be
a :class:`metrics.PreparedFeatures` and ``label_embeddings`` a :class:`metrics.PreparedLabelEmbeddings`
(validated once, derived Gram matrices and eigendecompositions cached and shared between metrics);
every metric gives the same value for either form, up to floating-point rounding.
Metrics that also take ``backend=`` / ``device=`` (where their heavy linear algebra runs: numpy or
torch, :mod:`metrics._backend`) carry ``fn.backends``, the backend names they accept; the runner
passes its backend only to those.

Adding a metric = one new module that decorates its entry point with :func:`register_metric`, plus
importing that module in ``metrics/__init__.py``. Registering a name twice is an error.
"""
from __future__ import annotations

from typing import Callable

from common import Registry

__all__ = ["CANONICAL_INPUTS", "METRICS", "register_metric", "get_metric", "list_metrics"]

CANONICAL_INPUTS = ("features", "labels", "label_embeddings", "source_probs")

#: read-only ``{name: callable}`` of every registered metric (a :class:`common.Registry`)
METRICS: Registry[Callable[..., float]] = Registry("metric")


def register_metric(name: str, *, requires: tuple[str, ...]):
    """Decorator registering ``fn`` under ``name`` with the canonical inputs it ``requires``.

    Sets ``fn.requires`` and ``fn.metric_name``. Raises ``ValueError`` if the name is taken, if
    ``requires`` names a non-canonical input, or if ``fn`` is already registered under another name
    (one callable, one registration: write a small adapter instead).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")
    requires = tuple(requires)
    unknown = [r for r in requires if r not in CANONICAL_INPUTS]
    if unknown or not requires or len(set(requires)) != len(requires):
        raise ValueError(f"metric {name!r}: requires must be distinct names from {CANONICAL_INPUTS}, "
                         f"got {requires}")

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered (by {METRICS[name].__module__}."
                             f"{METRICS[name].__qualname__})")
        if hasattr(fn, "metric_name"):
            raise ValueError(f"{fn.__qualname__} is already registered as {fn.metric_name!r}; "
                             f"register a separate adapter for {name!r}")
        fn.requires = requires
        fn.metric_name = name
        METRICS.add(name, fn)
        return fn

    return decorator


def get_metric(name: str) -> Callable[..., float]:
    """Return the metric registered under ``name``; ``KeyError`` listing the available names."""
    return METRICS[name]


def list_metrics() -> list[str]:
    """Sorted names of all registered metrics."""
    return sorted(METRICS)
