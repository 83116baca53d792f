"""Model reuse (MLL, Tan et al., ICML 2025, Sec. 4.3, Eq. 8-10).

For each target class c the ``k`` models with the highest reuse metric R[c, :] (Eq. 7) form the
ensemble E_c. Reconstruction of the lost equations, for a test image x with per-model class
probabilities ``p_m(.|x) = softmax(logits_m(x))`` over the C target classes:

* Eq. 9 (entropy weights): ``H_m(x) = -sum_c p_m(c|x) log p_m(c|x)`` and
  ``w_m^c(x) = (H_m(x) + eps) / sum_{m' in E_c} (H_m'(x) + eps)``: a weight *proportional to the
  entropy*, so an over-confident (low-entropy) model gets a lower weight, as the paper states
  (following Vishniakov et al., 2024, on VLM over-confidence). ``eps`` keeps one-hot outputs finite.
* Eq. 8 (class confidence): ``conf_c(x) = sum_{m in E_c} w_m^c(x) p_m(c|x)``.
* Eq. 10 (prediction): ``yhat(x) = argmax_c conf_c(x)``.

With k = 1 the ensemble of class c is its single best model and ``conf_c(x) = p_{m_c}(c|x)``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["top_k_models", "softmax", "entropy", "entropy_weights", "ensemble_confidence",
           "ensemble_predict", "DEFAULT_EPS"]

DEFAULT_EPS = 1e-6


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


def entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy (nats) along ``axis`` (0 log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis)


def _check_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 3:
        raise ValueError(f"probs must be (M, N, C) per-model class probabilities, got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=2), 1.0, atol=1e-5):
        raise ValueError("probs must be non-negative and sum to 1 over the classes (apply softmax first)")
    return p


def entropy_weights(probs: np.ndarray, members: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Eq. 9 for one ensemble: (N, |members|) weights w_m(x), rows summing to 1.

    ``probs`` (M, N, C), ``members``: model indices of the ensemble."""
    p = _check_probs(probs)
    return _weights(entropy(p, axis=2), np.asarray(members), eps)


def _weights(h: np.ndarray, members: np.ndarray, eps: float) -> np.ndarray:
    """Eq. 9 from the (M, N) entropies: (N, |members|)."""
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    hm = h[members].T + eps                                    # (N, |E|)
    return hm / hm.sum(axis=1, keepdims=True)


def ensemble_confidence(probs: np.ndarray, per_class_models: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Eq. 8: (N, C) confidences conf_c(x) = sum_{m in E_c} w_m^c(x) p_m(c|x).

    ``probs`` (M, N, C): p_m(c|x) of every hub model; ``per_class_models`` (C, k): E_c per class
    (e.g. :func:`top_k_models` of the reuse metric, or the same top-k row for every class)."""
    p = _check_probs(probs)
    members = np.asarray(per_class_models, dtype=np.int64)
    m, n, c = p.shape
    if members.ndim != 2 or members.shape[0] != c:
        raise ValueError(f"per_class_models must be (C={c}, k), got {members.shape}")
    if members.min() < 0 or members.max() >= m:
        raise ValueError(f"per_class_models holds model indices outside [0, {m})")
    h = entropy(p, axis=2)                                     # (M, N)
    conf = np.empty((n, c))
    for cls in range(c):
        w = _weights(h, members[cls], eps)                     # (N, k)
        conf[:, cls] = np.sum(w * p[members[cls], :, cls].T, axis=1)
    return conf


def ensemble_predict(probs: np.ndarray, per_class_models: np.ndarray, eps: float = DEFAULT_EPS
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Eq. 10: ``(predictions (N,), confidences (N, C))``; argmax ties go to the lower class index."""
    conf = ensemble_confidence(probs, per_class_models, eps)
    return np.argmax(conf, axis=1), conf
