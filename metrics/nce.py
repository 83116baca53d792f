"""NCE: Negative Conditional Entropy (Tran et al., "Transferability and Hardness of Supervised
Classification Tasks", ICCV 2019).

Input: the source model's hard labels ``z`` (N,) on the target data (argmax of its source head) and
the target labels ``y`` (N,)::

    P(y, z) = #{i : y_i = y, z_i = z} / N,   P(z) = sum_y P(y, z)
    nce     = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) )       (<= 0, higher is better)

Both label sets are remapped with ``np.unique`` (any integer ids; z may have a single value, which
gives ``-H(Y)``).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse

from ._validation import check_labels, check_probabilities
from ._backend import accepts_backend, resolve_backend, to_host
from .registry import register_metric

__all__ = ["nce"]


@accepts_backend
def nce(source_labels, labels, *, backend=None, device=None) -> float:
    """Negative conditional entropy ``-H(Y | Z)`` of target labels given source hard labels
    (``backend`` / ``device``: where the joint table is computed, :mod:`metrics._backend`)."""
    B = resolve_backend(backend, device)
    enc_y = check_labels(to_host(labels))
    enc_z = check_labels(to_host(source_labels), enc_y.index.shape[0], name="source_labels", min_classes=1)
    if not B.numpy:
        return B.nce(enc_y, enc_z)
    N = enc_y.index.shape[0]
    joint = scipy.sparse.coo_matrix((np.full(N, 1.0 / N), (enc_y.index, enc_z.index)),
                                    shape=(enc_y.n_classes, enc_z.n_classes)).tocsr()
    joint.sum_duplicates()
    p_z = np.asarray(joint.sum(axis=0)).ravel()
    coo = joint.tocoo()
    return float(np.sum(coo.data * np.log(coo.data / p_z[coo.col])))


@register_metric("nce", requires=("source_probs", "labels"))
@accepts_backend
def nce_from_probs(source_probs, labels, *, backend=None, device=None) -> float:
    """Registry adapter: NCE with ``z = argmax`` of the source softmax ``source_probs`` (N, Cs)."""
    P = check_probabilities(to_host(source_probs))
    return nce(np.argmax(P, axis=1), labels, backend=backend, device=device)
