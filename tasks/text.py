"""Question / expression encoders of the task candidates (the text side of a fused model).

``get_question_encoder(name)`` returns a :class:`Label_embedding.encoders.TextEncoder`: a locally
defined one of :data:`LOCAL_TEXT_ENCODERS` (``"bow"``), else the project's text-encoder registry
(``minilm``, and every encoder other helpers register there: e5, mpnet, bert, ...).

``bow``: signed feature hashing of lower-cased word tokens (Weinberger et al. 2009),
``v[h(w) mod D] += s(w)`` with ``h``/``s`` from the sha1 of the word, then L2-normalised; D = 256.
No weights, no fitting: a deliberately weak, deterministic question encoder.
"""
from __future__ import annotations

import hashlib
import re
from typing import List

import numpy as np

from common import Registry
from Label_embedding.encoders import TEXT_ENCODERS, TextEncoder, get_text_encoder

__all__ = ["BagOfWordsEncoder", "LOCAL_TEXT_ENCODERS", "get_question_encoder", "question_encoder_names"]

LOCAL_TEXT_ENCODERS: Registry = Registry("task text encoder")


@LOCAL_TEXT_ENCODERS.register("bow")
class BagOfWordsEncoder(TextEncoder):
    """Hashed bag of words (module docstring), (N, dim) float32, rows L2-normalised (zero for no words)."""

    name = "bow"

    def __init__(self, dim: int = 256, batch_size: int = 4096):
        super().__init__(batch_size)
        if int(dim) < 2:
            raise ValueError(f"bow dim must be >= 2, got {dim}")
        self.dim = int(dim)

    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                digest = hashlib.sha1(word.encode()).digest()
                j = int.from_bytes(digest[:4], "little") % self.dim
                out[i, j] += 1.0 if digest[4] & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def question_encoder_names() -> List[str]:
    """Every name :func:`get_question_encoder` accepts."""
    return sorted(set(LOCAL_TEXT_ENCODERS) | set(TEXT_ENCODERS))


def get_question_encoder(name: str, **kwargs) -> TextEncoder:
    """The encoder ``name`` (local ones first, then ``Label_embedding``'s registry)."""
    if name in LOCAL_TEXT_ENCODERS:
        return LOCAL_TEXT_ENCODERS[name](**kwargs)
    if name in TEXT_ENCODERS:
        return get_text_encoder(name, **kwargs)
    raise KeyError(f"unknown question encoder {name!r}; available: {', '.join(question_encoder_names())}")
