"""Model reuse (MLL, Tan et al., ICML 2025, Sec. 4.3, Eq. 8-10).

For each target class c the ``k`` models with the highest reuse metric R[c, :] (Eq. 7) form the
ensemble E_c. For a test image x with per-model class probabilities ``p_m(.|x)`` over the C target
classes (softmax of ``100 cos``):

* Eq. 8 (class confidence): ``conf_c(x) = sum_{m in E_c} w_m(x) p_m(c|x)``;
* Eq. 9 (weights), :data:`REUSE_WEIGHTS`:
  ``"inverse_entropy"`` (released ``reuse.py``, default): ``w_m(x) = 1 / max(H_2(p_m(x)), eps)``,
  the inverse entropy in bits, not normalised: confident models weigh more, and even at k = 1
  class c scores ``p(c|x) / H(x)``. ``eps`` (1e-6 bits) guards a one-hot prediction (H = 0),
  whose weight becomes 1e6: finite, larger than any non-degenerate model's.
  ``"entropy"`` (our reconstruction of the prose): ``w_m^c(x) = (H_m(x) + eps) / sum_{m' in E_c}
  (H_m'(x) + eps)`` (nats), weights proportional to the entropy, normalised per ensemble.
* Eq. 10 (prediction): ``yhat(x) = argmax_c conf_c(x)``.
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

from common import Registry

__all__ = ["top_k_models", "softmax", "entropy", "entropy_weights", "inverse_entropy_weights", "REUSE_WEIGHTS",
           "ensemble_confidence", "ensemble_predict", "DEFAULT_EPS", "DEFAULT_WEIGHTS"]

DEFAULT_EPS = 1e-6
DEFAULT_WEIGHTS = "inverse_entropy"


def top_k_models(scores: np.ndarray, k: int) -> np.ndarray:
    """(C, k') int: per class the indices of the ``k`` highest-scoring models, best first; ties go to
    the lower model index; k' = min(k, M)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must be (C, M) with M >= 1, got {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.argsort(-scores, axis=1, kind="stable")[:, :min(k, scores.shape[1])]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def entropy(probs: np.ndarray, axis: int = -1, base: float = np.e) -> np.ndarray:
    """Shannon entropy along ``axis`` (nats by default; ``base=2``: bits; 0 log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis) / np.log(base)


def _check_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"probs must be (M, N, C) per-model class probabilities, got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=2), 1.0, atol=1e-5):
        raise ValueError("probs must be non-negative and sum to 1 over the classes (apply softmax first)")
    return p


def _entropy_proportional(p: np.ndarray, members: np.ndarray, eps: float) -> np.ndarray:
    """Reconstruction, from the (M, N, C) probabilities: (N, |members|), rows summing to 1."""
    hm = entropy(p[members], axis=2).T + eps                  # (N, |E|)
    return hm / hm.sum(axis=1, keepdims=True)


def _inverse_entropy(p: np.ndarray, members: np.ndarray, eps: float) -> np.ndarray:
    """Released: (N, |members|) ``1 / max(H_2, eps)``, not normalised."""
    return 1.0 / np.maximum(entropy(p[members], axis=2, base=2.0).T, eps)


REUSE_WEIGHTS: Registry[Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = Registry("reuse weights")
REUSE_WEIGHTS.add("inverse_entropy", _inverse_entropy)
REUSE_WEIGHTS.add("entropy", _entropy_proportional)


def _weights(p: np.ndarray, members: np.ndarray, weights: str, eps: float) -> np.ndarray:
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return REUSE_WEIGHTS[weights](p, np.asarray(members, dtype=np.int64), eps)


def entropy_weights(probs: np.ndarray, members, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Reconstruction's Eq. 9 for one ensemble: (N, |members|) weights, rows summing to 1.
    ``probs`` (M, N, C), ``members``: model indices of the ensemble."""
    return _weights(_check_probs(probs), members, "entropy", eps)


def inverse_entropy_weights(probs: np.ndarray, members, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Released Eq. 9 for one ensemble: (N, |members|) ``1 / max(H_2(p_m(x)), eps)``."""
    return _weights(_check_probs(probs), members, "inverse_entropy", eps)


def ensemble_confidence(probs: np.ndarray, per_class_models: np.ndarray, eps: float = DEFAULT_EPS, *,
                        weights: str = DEFAULT_WEIGHTS) -> np.ndarray:
    """Eq. 8: (N, C) confidences conf_c(x) = sum_{m in E_c} w_m(x) p_m(c|x), ``weights`` a key of
    :data:`REUSE_WEIGHTS`.

    ``probs`` (M, N, C): p_m(c|x) of every hub model; ``per_class_models`` (C, k): E_c per class
    (e.g. :func:`top_k_models` of the reuse metric, or the same top-k row for every class)."""
    p = _check_probs(probs)
    members = np.asarray(per_class_models, dtype=np.int64)
    m, n, c = p.shape
    if members.ndim != 2 or members.shape[0] != c:
        raise ValueError(f"per_class_models must be (C={c}, k), got {members.shape}")
    if members.min() < 0 or members.max() >= m:
        raise ValueError(f"per_class_models holds model indices outside [0, {m})")
    REUSE_WEIGHTS[weights]                                    # unknown name: KeyError before any work
    conf = np.empty((n, c))
    for cls in range(c):
        w = _weights(p, members[cls], weights, eps)            # (N, k)
        conf[:, cls] = np.sum(w * p[members[cls], :, cls].T, axis=1)
    return conf


def ensemble_predict(probs: np.ndarray, per_class_models: np.ndarray, eps: float = DEFAULT_EPS, *,
                     weights: str = DEFAULT_WEIGHTS) -> Tuple[np.ndarray, np.ndarray]:
    """Eq. 10: ``(predictions (N,), confidences (N, C))``; argmax ties go to the lower class index."""
    conf = ensemble_confidence(probs, per_class_models, eps, weights=weights)
    return np.argmax(conf, axis=1), conf
