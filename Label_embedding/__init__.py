"""Label embeddings ("F-labels", EMMS Sec. 3.2) from foundation-model text encoders.

* ``get_text_encoder(name)`` returns an object with ``encode(texts) -> (N, E) float32``; the registry
  ``TEXT_ENCODERS`` holds ``clip`` (ViT-g/14 LAION-2B text tower), ``bert`` (bert-large-uncased),
  ``gpt2`` (gpt2-medium), all from local weights, ``minilm`` (offline default), and the packaged
  ``e5``, ``mpnet``, ``spacy_md`` (``offline_encoders.py``, docs/encoders.md). See ``encoders.py``.
* ``embed_classnames`` / ``write_label_embeddings`` / ``write_caption_embeddings`` make the cache
  files ``label_embeddings/{dataset}/{encoder}.npy`` and ``caption_embeddings/...`` (``embed.py``).
* ``stack_label_embeddings`` stacks K encoders' (N, E_k) embeddings into EMMS's (N, E, K) tensor
  (``stacking.py``).
"""
from .embed import (PROMPT_TEMPLATES, embed_classnames, readable_classname, resolve_templates,
                    write_caption_embeddings, write_label_embeddings)
from .encoders import TEXT_ENCODERS, TextEncoder, get_text_encoder, list_text_encoders, register_text_encoder
from .offline_encoders import OFFLINE_LABEL_ENCODERS  # (importing it registers e5, mpnet, spacy_md)
from .stacking import STACK_METHODS, stack_label_embeddings

__all__ = ["OFFLINE_LABEL_ENCODERS", "TEXT_ENCODERS", "TextEncoder", "get_text_encoder", "list_text_encoders", "register_text_encoder",
           "PROMPT_TEMPLATES", "embed_classnames", "readable_classname", "resolve_templates",
           "write_caption_embeddings", "write_label_embeddings", "STACK_METHODS", "stack_label_embeddings"]
