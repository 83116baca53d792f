"""Stack the label embeddings of K text encoders into EMMS's (N, E, K) label tensor.

EMMS (Meng et al., NeurIPS 2023, Eq. 2-4) regresses the image features onto a weighted sum of K
"F-label" embeddings ``Z_k`` (N x E each): ``Z = sum_k t_k Z_k`` with simplex weights t. This needs a
common width E. The paper's encoders (CLIP ViT-g/14, BERT-large, GPT-2 medium) are all 1024-d, so
their embeddings stack unchanged. Encoders of different widths (e.g. MiniLM 384-d with BERT 1024-d)
are brought to a common width D by a registered method:

* ``"project"`` (default): a fixed random Gaussian projection per encoder,
  ``Z_k' = Z_k P_k`` with ``P_k`` of shape (E_k, D), entries i.i.d. ``N(0, 1/D)``, so that
  ``E||z P_k||^2 = ||z||^2`` (Johnson-Lindenstrauss); ``P_k`` is drawn from
  ``np.random.default_rng([random_state, k, E_k])``, hence deterministic. Embeddings whose width
  already equals D are left unchanged. Default ``D = max_k E_k``.
* ``"pad"``: zero-pad every embedding on the right to ``D = max_k E_k`` (``dim`` may be larger, not
  smaller); inner products are preserved exactly.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["STACK_METHODS", "stack_label_embeddings", "gaussian_projection"]


def gaussian_projection(in_dim: int, out_dim: int, seed: Sequence[int]) -> np.ndarray:
    """(in_dim, out_dim) matrix with i.i.d. N(0, 1/out_dim) entries from ``default_rng(seed)``."""
    rng = np.random.default_rng(list(seed))
    return rng.standard_normal((in_dim, out_dim)) / np.sqrt(out_dim)


def _project(embeddings: List[np.ndarray], dim: Optional[int], random_state: int) -> List[np.ndarray]:
    target = max(e.shape[1] for e in embeddings) if dim is None else dim
    return [e if e.shape[1] == target else e @ gaussian_projection(e.shape[1], target, [random_state, k, e.shape[1]])
            for k, e in enumerate(embeddings)]


def _pad(embeddings: List[np.ndarray], dim: Optional[int], random_state: int) -> List[np.ndarray]:
    widest = max(e.shape[1] for e in embeddings)
    target = widest if dim is None else dim
    if target < widest:
        raise ValueError(f"method='pad' cannot shrink: dim={dim} is smaller than the widest embedding ({widest})")
    return [np.pad(e, ((0, 0), (0, target - e.shape[1]))) for e in embeddings]


STACK_METHODS: Dict[str, Callable[[List[np.ndarray], Optional[int], int], List[np.ndarray]]] = {
    "project": _project,
    "pad": _pad,
}


def stack_label_embeddings(embeddings: Sequence[np.ndarray], *, method: str = "project", dim: Optional[int] = None,
                           random_state: int = 0) -> np.ndarray:
    """Stack K label embeddings ``Z_k`` (N x E_k) into an (N, E, K) array.

    Equal widths (and ``dim`` None or equal to that width) stack unchanged, whatever ``method``.
    Otherwise ``method`` (``"project"`` or ``"pad"``, see the module docstring) maps every
    ``Z_k`` to width ``E = dim`` (default: the largest E_k). Inputs are never modified; the result
    is float64 if any input is float64, else float32.
    """
    if method not in STACK_METHODS:
        raise ValueError(f"unknown stacking method {method!r}; methods: {', '.join(sorted(STACK_METHODS))}")
    if isinstance(embeddings, np.ndarray) or len(embeddings) == 0:
        raise ValueError("embeddings must be a non-empty list of (N, E_k) arrays")
    arrays = [np.asarray(e) for e in embeddings]
    for k, e in enumerate(arrays):
        if e.ndim != 2:
            raise ValueError(f"embedding {k} must be 2-D (N, E_k), got shape {e.shape}")
        if not np.issubdtype(e.dtype, np.number) or not np.all(np.isfinite(e)):
            raise ValueError(f"embedding {k} must hold finite numbers")
    sizes = {e.shape[0] for e in arrays}
    if len(sizes) != 1:
        raise ValueError(f"embeddings disagree on N (rows): {[e.shape[0] for e in arrays]}")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1):
        raise ValueError(f"dim must be a positive integer or None, got {dim!r}")
    dtype = np.result_type(*[e.dtype for e in arrays], np.float32)
    if dtype not in (np.float32, np.float64):
        dtype = np.float64
    arrays = [e.astype(dtype, copy=False) for e in arrays]
    widths = {e.shape[1] for e in arrays}
    if len(widths) == 1 and (dim is None or dim == arrays[0].shape[1]):
        return np.stack(arrays, axis=2)
    same = STACK_METHODS[method](arrays, None if dim is None else int(dim), int(random_state))
    return np.stack([s.astype(dtype, copy=False) for s in same], axis=2)
