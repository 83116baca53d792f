"""Input validation shared by every metric (the one place where bad input becomes a ``ValueError``).

Every public metric converts its inputs through these helpers at the boundary, so all metrics agree on
what they accept:

* arrays are converted to ``float64`` (float16 / float32 inputs simply work); the caller's array is
  never modified (helpers return new arrays or read-only use of the original);
* NaN / inf, empty input, wrong dimensionality and mismatched sample counts are rejected with a message
  naming the argument and the problem;
* magnitudes outside ``[MIN_ABS, MAX_ABS]`` = ``[1e-150, 1e150]`` are rejected (the largest absolute
  value of a non-zero features / targets / label-embedding array): beyond them the products every
  metric forms (``X^T X``, squared norms) overflow to inf or underflow into subnormals, which gave
  NaN, ``LinAlgError`` or silently wrong numbers. Inside the range each metric is numerically
  stable; the scale-invariant ones rescale internally where they form 4th powers;
* class ids may be any integers (e.g. ``{0, 2, 7}``): they are remapped to ``0..C-1`` with
  ``np.unique(..., return_inverse=True)``; arrays are never sized by ``labels.max() + 1``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "DegenerateInputError",
    "EncodedLabels",
    "check_features",
    "check_magnitude",
    "check_not_constant",
    "pow2_scale",
    "check_labels",
    "check_targets",
    "check_label_embeddings",
    "check_probabilities",
    "check_positive",
    "check_same_keys",
]

class DegenerateInputError(ValueError):
    """The input is valid but the metric is undefined on it (e.g. unregularised EMMS when
    rank(X) >= N - 1 makes every least-squares fit exact). Callers that score many models may record
    such a pair as skipped, with this message, instead of stopping; every other ``ValueError`` is a bug
    in the input and must propagate."""


#: accepted range of the largest absolute value of an input array (see the module docstring)
MAX_ABS = 1e150
MIN_ABS = 1e-150

#: rows of a probability matrix must sum to 1 within this absolute tolerance (float16 softmax
#: outputs are accurate to ~1e-3).
PROBABILITY_ATOL = 1e-3


class EncodedLabels(NamedTuple):
    """Labels remapped to contiguous ids.

    classes : (C,) the distinct original class ids, sorted.
    index   : (N,) int64 in ``0..C-1``, ``classes[index]`` equals the original labels.
    counts  : (C,) int64 number of samples of each class (all >= 1).
    """

    classes: np.ndarray
    index: np.ndarray
    counts: np.ndarray

    @property
    def n_classes(self) -> int:
        return int(self.classes.shape[0])


def _as_float_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # e.g. ragged nested lists
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s)")


def _max_abs(arr: np.ndarray) -> float:
    """``max |arr|`` without an ``|arr|`` temporary (0.0 for an empty array)."""
    return max(float(arr.max()), -float(arr.min())) if arr.size else 0.0


def check_magnitude(arr: np.ndarray, name: str) -> None:
    """``ValueError`` unless the largest ``|value|`` of ``arr`` is 0 or within ``[MIN_ABS, MAX_ABS]``."""
    top = _max_abs(arr)
    if top > MAX_ABS:
        raise ValueError(f"{name}: largest magnitude {top:.3g} exceeds {MAX_ABS:g}, where products of such values "
                         "(X^T X, squared norms) overflow float64; rescale it (e.g. divide by its largest "
                         "absolute value)")
    if 0.0 < top < MIN_ABS:
        raise ValueError(f"{name}: largest magnitude {top:.3g} is below {MIN_ABS:g}, where products of such "
                         "values underflow float64; rescale it (e.g. divide by its largest absolute value)")


def check_not_constant(X: np.ndarray, name: str = "features", *, what: str = "the metric is undefined") -> None:
    """``DegenerateInputError`` if every column of ``X`` (N, D) takes a single value (exact test)."""
    if np.array_equal(X.max(axis=0), X.min(axis=0)):
        raise DegenerateInputError(f"{name} are constant: every column has zero variance, so the samples "
                                   f"are indistinguishable ({what})")


def pow2_scale(arr: np.ndarray) -> float:
    """A power of four ``s`` with ``max |s * arr|`` in ``[1/4, 1)`` (1.0 for an all-zero array).

    Multiplying by ``s`` is exact in floating point (no rounding, barring underflow), and so are the
    square roots of quantities scaled by ``s^2``: a scale-invariant computation on ``s * arr`` gives
    the result of the original up to rounding, without overflow or underflow in its products.
    """
    top = _max_abs(arr)
    if top == 0.0 or not np.isfinite(top):
        return 1.0
    exponent = np.frexp(top)[1]                          # top = f 2^exponent, f in [0.5, 1)
    exponent += exponent % 2                              # even: s = 4^(-exponent / 2)
    return float(np.ldexp(1.0, -exponent))


def check_features(features, name: str = "features", *, min_samples: int = 2) -> np.ndarray:
    """Return ``features`` as a finite float64 ``(N, D)`` array (no copy if already float64)."""
    raw = features if isinstance(features, np.ndarray) else None
    X = _as_float_array(features, name)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N samples x D dims), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if X.shape[0] < min_samples:
        raise ValueError(f"{name} needs at least {min_samples} samples, got {X.shape[0]}")
    # float16/32 -> float64 conversion keeps (non-)finiteness: check the smaller original array
    _check_finite(raw if raw is not None and raw.dtype.kind == "f" else X, name)
    check_magnitude(X, name)
    return X


def check_labels(labels, n_samples: int | None = None, name: str = "labels", *,
                 min_classes: int = 2) -> EncodedLabels:
    """Validate 1-D integer class labels and remap them to ``0..C-1``.

    Raises ``ValueError`` for non-integer dtypes, wrong shape, a length different from
    ``n_samples``, empty input or fewer than ``min_classes`` distinct classes.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class ids, got shape {y.shape}")
    if y.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype (class ids), got {y.dtype}; "
                         "cast with labels.astype(int) if they are integral floats")
    if n_samples is not None and y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} entries but the features have {n_samples} samples")
    classes, index, counts = np.unique(y, return_inverse=True, return_counts=True)
    if classes.shape[0] < min_classes:
        raise ValueError(f"{name} contain {classes.shape[0]} distinct class(es); at least {min_classes} "
                         "are needed (a single class carries no transfer signal)")
    return EncodedLabels(classes, index.reshape(-1).astype(np.int64), counts.astype(np.int64))


def check_targets(targets, n_samples: int, name: str = "labels") -> np.ndarray:
    """Return real-valued regression targets as a finite float64 ``(N, T)`` array."""
    Y = _as_float_array(targets, name)
    if Y.ndim != 2:
        raise ValueError(f"{name} (regression targets) must be 2-D (N x T), got shape {Y.shape}")
    if Y.shape[1] == 0:
        raise ValueError(f"{name} has no target columns (shape {Y.shape})")
    if Y.shape[0] != n_samples:
        raise ValueError(f"{name} has {Y.shape[0]} rows but the features have {n_samples} samples")
    _check_finite(Y, name)
    check_magnitude(Y, name)
    return Y


def check_label_embeddings(label_embeddings, n_samples: int | None,
                           name: str = "label_embeddings", *, convert: bool = True) -> np.ndarray:
    """Return per-sample label embeddings as a finite float64 ``(N, E, K)`` array.

    Accepts an ``(N, E, K)`` array or a non-empty sequence of K arrays of shape ``(N, E)`` (stacked
    on the last axis). A 2-D array is rejected rather than guessed: pass ``Y[..., None]`` for K=1.
    ``n_samples`` None skips the length check. ``convert=False`` validates the same way but returns
    the array in its own float dtype (float16/32 kept; other numeric types become float64).
    """
    if isinstance(label_embeddings, (list, tuple)):
        if len(label_embeddings) == 0:
            raise ValueError(f"{name} is an empty list; give K >= 1 arrays of shape (N, E)")
        if any(isinstance(p, (list, tuple)) for p in label_embeddings):
            # nested lists read as (N, E, K) or as K x (N, E) have the same shape when N == E: never guess
            raise ValueError(f"{name} is a nested list, which is ambiguous ((N, E, K) or K lists of (N, E)); "
                             "pass np.asarray(...) of shape (N, E, K) or a list of K numpy (N, E) arrays")
        parts = [_as_numeric_array(p, f"{name}[{k}]", convert) for k, p in enumerate(label_embeddings)]
        for k, p in enumerate(parts):
            if p.ndim != 2:
                raise ValueError(f"{name}[{k}] must be 2-D (N x E), got shape {p.shape}")
        shapes = {p.shape for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"{name} arrays have different shapes {sorted(shapes)}; all must be (N, E)")
        Y = np.stack(parts, axis=2)
    else:
        Y = _as_numeric_array(label_embeddings, name, convert)
        if Y.ndim != 3:
            raise ValueError(f"{name} must be 3-D (N samples x E dims x K embeddings), got shape "
                             f"{Y.shape}" + ("; use Y[..., None] for a single embedding" if Y.ndim == 2 else ""))
    if min(Y.shape) == 0:
        raise ValueError(f"{name} is empty (shape {Y.shape})")
    if n_samples is not None and Y.shape[0] != n_samples:
        raise ValueError(f"{name} has {Y.shape[0]} samples but the features have {n_samples}")
    _check_finite(Y, name)
    check_magnitude(Y, name)
    return Y


def _as_numeric_array(x, name: str, convert: bool) -> np.ndarray:
    """:func:`_as_float_array`, or (``convert=False``) the same checks keeping a float dtype."""
    if not convert:
        try:
            raw = np.asarray(x)
        except Exception:                 # e.g. ragged lists: _as_float_array names the problem
            raw = None
        if raw is not None and raw.dtype.kind == "f":
            return raw
    return _as_float_array(x, name)


def check_probabilities(probs, n_samples: int | None = None, name: str = "source_probs",
                        *, atol: float = PROBABILITY_ATOL) -> np.ndarray:
    """Return a row-stochastic float64 ``(N, Cs)`` matrix.

    Entries must be finite and >= 0, and each row must sum to 1 within ``atol``; rows within the
    tolerance are renormalised exactly (so float16 softmax outputs are accepted). Logits or
    unnormalised scores are rejected, never silently softmaxed.
    """
    P = _as_float_array(probs, name)
    if P.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N samples x Cs source classes), got shape {P.shape}")
    if P.shape[0] == 0 or P.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {P.shape})")
    if n_samples is not None and P.shape[0] != n_samples:
        raise ValueError(f"{name} has {P.shape[0]} rows but there are {n_samples} labels")
    _check_finite(P, name)
    if np.any(P < 0):
        raise ValueError(f"{name} has negative entries; pass softmax probabilities, not logits")
    sums = P.sum(axis=1)
    bad = np.abs(sums - 1.0) > atol
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} rows must sum to 1 (softmax probabilities); {int(bad.sum())} row(s) do not, "
                         f"e.g. row {i} sums to {sums[i]:.6g}")
    return P / sums[:, None]


def check_positive(value, name: str, *, integer: bool = False, allow_none: bool = False):
    """Check a scalar hyper-parameter is > 0 (and an integer if ``integer``)."""
    if value is None and allow_none:
        return None
    if integer:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_same_keys(scores: dict, ground_truth: dict, *, min_models: int = 2) -> tuple[list, np.ndarray, np.ndarray]:
    """Align two ``{model: value}`` dicts by name (order of ``scores``).

    Returns (names, s, g) with float64 vectors. Raises ``ValueError`` naming the models present in
    only one of them, non-finite values, or fewer than ``min_models`` models.
    """
    if not isinstance(scores, dict) or not isinstance(ground_truth, dict):
        raise ValueError("scores and ground truth must be dicts {model name: value}, got "
                         f"{type(scores).__name__} and {type(ground_truth).__name__}")
    missing = [m for m in ground_truth if m not in scores]
    extra = [m for m in scores if m not in ground_truth]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no score for model(s) {missing}")
        if extra:
            parts.append(f"no ground truth for model(s) {extra}")
        raise ValueError("scores and ground truth cover different models: " + "; ".join(parts))
    names = list(scores)
    if len(names) < min_models:
        raise ValueError(f"need at least {min_models} models to compare rankings, got {len(names)}")
    s = np.array([_scalar(scores[m], f"score of {m!r}") for m in names])
    g = np.array([_scalar(ground_truth[m], f"ground truth of {m!r}") for m in names])
    return names, s, g


def _scalar(v, what: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not a number: {v!r}") from exc
    if not np.isfinite(f):
        raise ValueError(f"{what} is not finite: {f}")
    return f

