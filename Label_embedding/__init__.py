"""Label embeddings ("F-labels") from foundation-model text encoders.

``get_text_encoder(name)`` returns an object with ``encode(texts) -> (N, E) float32``; the registry
``TEXT_ENCODERS`` maps names to factories. See ``Label_embedding/encoders.py``.
"""
from .encoders import TEXT_ENCODERS, TextEncoder, get_text_encoder, list_text_encoders, register_text_encoder

__all__ = ["TEXT_ENCODERS", "TextEncoder", "get_text_encoder", "list_text_encoders", "register_text_encoder"]
