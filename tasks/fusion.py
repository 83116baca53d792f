"""Training-free fusion of an image vector and a text vector into one candidate feature.

For image features ``I`` (N, Di) and text embeddings ``T`` (N, Dt) of the same samples:

    zi = I / ||I||            (rows; if Di > max_image_dim: zi = normalise(zi G), G (Di, max_image_dim))
    zt = T / ||T||
    X  = [ zi,  zt,  sqrt(Dt) * (zi P) * zt ]         (N, Di' + 2 Dt)

``G`` and ``P`` (Di', Dt) are fixed Gaussian matrices with N(0, 1/cols) entries
(``Label_embedding.stacking.gaussian_projection``, seeded with ``[random_state, role, rows]``), so
the third block is a random-feature bilinear (elementwise-product) interaction of image and text,
the training-free counterpart of the product fusion of VQA models. Inputs are never modified.
"""
from __future__ import annotations

import numpy as np

from Label_embedding.stacking import gaussian_projection

__all__ = ["bilinear_fusion", "FUSION_VERSION"]

FUSION_VERSION = "bilinear-v1"


def _normalise(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norms > 0, norms, 1.0)


def bilinear_fusion(image: np.ndarray, text: np.ndarray, *, random_state: int = 0,
                    max_image_dim: int = 512) -> np.ndarray:
    """(N, Di) image + (N, Dt) text -> (N, min(Di, max_image_dim) + 2 Dt) float32 (module docstring)."""
    image = np.asarray(image, dtype=np.float64)
    text = np.asarray(text, dtype=np.float64)
    if image.ndim != 2 or text.ndim != 2 or image.shape[0] != text.shape[0] or image.shape[0] == 0:
        raise ValueError(f"fusion needs (N, Di) image and (N, Dt) text features with the same N > 0, "
                         f"got {image.shape} and {text.shape}")
    if not (np.all(np.isfinite(image)) and np.all(np.isfinite(text))):
        raise ValueError("fusion inputs contain NaN or inf values")
    zi = _normalise(image)
    if zi.shape[1] > max_image_dim:
        zi = _normalise(zi @ gaussian_projection(zi.shape[1], max_image_dim, [random_state, 0, zi.shape[1]]))
    zt = _normalise(text)
    proj = gaussian_projection(zi.shape[1], zt.shape[1], [random_state, 1, zi.shape[1]])
    inter = np.sqrt(zt.shape[1]) * (zi @ proj) * zt
    return np.concatenate([zi, zt, inter], axis=1).astype(np.float32)
