"""LEEP: Log Expected Empirical Prediction (Nguyen et al., ICML 2020).

Input: the source model's softmax outputs ``P`` (N, Cs) on the target data (its own source head,
e.g. the ImageNet classifier) and the target labels ``y`` (N,) with C classes::

    P(y, z)  = (1/N) sum_{i : y_i = y} P[i, z]           (C, Cs) empirical joint
    P(y | z) = P(y, z) / P(z),  P(z) = sum_y P(y, z)
    leep     = (1/N) sum_i log( sum_z P[i, z] P(y_i | z) )

Departures from the EMMS code: it applies ``softmax`` to classifier outputs with a duplicated
``softmax`` definition that normalises over the wrong axis, sizes arrays by ``y.max() + 1`` and drops
the log (reporting the mean expected probability). Here the log is kept (the paper's definition),
class ids are remapped, and the input must already be row-stochastic (validated, never re-softmaxed).
"""
from __future__ import annotations

import numpy as np

from ._linalg import class_sums
from ._validation import EncodedLabels, check_labels, check_probabilities
from ._backend import accepts_backend, resolve_backend, to_host
from .registry import register_metric

__all__ = ["leep", "leep_from_encoded"]


@register_metric("leep", requires=("source_probs", "labels"))
@accepts_backend
def leep(source_probs, labels, *, backend=None, device=None) -> float:
    """LEEP score (<= 0, higher is better) of source-head probabilities ``source_probs`` (N, Cs);
    ``backend`` / ``device``: where the joint table is computed (:mod:`metrics._backend`)."""
    B = resolve_backend(backend, device)
    enc = check_labels(to_host(labels))
    P = check_probabilities(to_host(source_probs), enc.index.shape[0])
    return leep_from_encoded(P, enc) if B.numpy else B.leep(P, enc)


def leep_from_encoded(P: np.ndarray, enc: EncodedLabels) -> float:
    """LEEP on validated inputs (shared with NLEEP, where P are GMM posteriors)."""
    N = P.shape[0]
    joint = class_sums(P, enc.index, enc.n_classes) / N            # (C, Cs)
    marginal = joint.sum(axis=0)                                   # (Cs,)
    # a source class with zero total mass has P[:, z] = 0 for every sample: its column never counts
    cond = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = np.einsum("iz,iz->i", P, cond[enc.index])           # sum_z P[i, z] P(y_i | z)
    return float(np.mean(np.log(expected)))
