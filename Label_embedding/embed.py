"""Class-name and caption embeddings ("F-labels", EMMS Sec. 3.2) written to the shared cache.

Class names (classification): class c of a dataset with names ``n_c`` and prompt templates
``p_1..p_T`` gets the embedding

    Z[c] = (1/T) * sum_t enc(p_t.format(readable(n_c)))          Z: (C, E) float32, row c = class id c

(prompt ensembling as in CLIP, Radford et al. 2021; with one template it is just ``enc(p_1(n_c))``).
``readable`` replaces underscores by spaces and strips blanks (``"apple_pie"`` -> ``"apple pie"``);
pass ``readable=False`` to embed the names verbatim. Per-sample F-labels are rows ``Z[y_i]``.

Captions (captioning): sample i gets ``enc(caption_i)``: (N, E) float32, row order = the sample order
of ``captions/{dataset}.json`` written by the feature extraction.

Files go to ``label_embeddings/{dataset}/{encoder}.npy`` and ``caption_embeddings/{dataset}/{encoder}.npy``
of :class:`data.cache.CacheLayout`, atomically, each with a provenance record
(:func:`data.cache.save_entry`) of what it was made from:

    class names: {"encoder": cache name, "encoder_name": encoder.name, "templates": [...], "readable": bool,
                  "classnames": [...]}
    captions:    {"encoder": ..., "encoder_name": ..., "captions_sha256": sha256 of the caption list, "n": N}

An existing file is kept (``overwrite=False``) only while its record matches and its bytes hash to
the recorded value; otherwise (other class names or templates, a corrupt or legacy file) it is
re-embedded with one note. Encoder options (``encoder_kwargs``: weights folder, device, batch size)
are not part of the record: a different checkpoint under the same name needs its own ``cache_name``.
A long caption run resumes from its finished chunks.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from data.cache import (CacheLayout, CacheCorruptError, check_entry, entry_lock, load_json,
                        load_npy, save_entry, stale_note)
from data.fingerprint import sha256_json

from .encoders import TextEncoder, get_text_encoder

__all__ = ["PROMPT_TEMPLATES", "resolve_templates", "readable_classname", "embed_classnames",
           "write_label_embeddings", "write_caption_embeddings"]


def _openai_imagenet_templates() -> Tuple[str, ...]:
    from open_clip import OPENAI_IMAGENET_TEMPLATES
    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


#: named prompt-template sets; a template is a format string with one ``{}`` for the class name
PROMPT_TEMPLATES: Dict[str, object] = {
    "photo": ("a photo of a {}.",),                    # the default
    "name": ("{}",),                                   # the bare class name
    "openai_imagenet": _openai_imagenet_templates,     # CLIP's 80 ImageNet prompts (lazy: needs open_clip)
}

EncoderLike = Union[str, TextEncoder]


def resolve_templates(templates: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """A template-set name of :data:`PROMPT_TEMPLATES` or a sequence of ``{}`` format strings."""
    if isinstance(templates, str):
        if templates not in PROMPT_TEMPLATES:
            raise ValueError(f"unknown template set {templates!r}; sets: {', '.join(sorted(PROMPT_TEMPLATES))} "
                             "(or pass a list of format strings with one '{}')")
        value = PROMPT_TEMPLATES[templates]
        out = tuple(value() if callable(value) else value)
    else:
        out = tuple(str(t) for t in templates)
    if not out:
        raise ValueError("no prompt template given")
    bad = [t for t in out if t.count("{}") != 1]
    if bad:
        raise ValueError(f"each template needs exactly one '{{}}' placeholder: {bad[:3]}")
    return out


def readable_classname(name: str) -> str:
    """``'AM_General_Hummer_SUV_2000'`` -> ``'AM General Hummer SUV 2000'`` (underscores to spaces, blanks squeezed)."""
    return re.sub(r"\s+", " ", str(name).replace("_", " ")).strip()


def _as_encoder(encoder: EncoderLike, encoder_kwargs: Optional[Mapping] = None) -> TextEncoder:
    if isinstance(encoder, TextEncoder):
        if encoder_kwargs:
            raise ValueError("encoder_kwargs apply only when the encoder is given by name")
        return encoder
    return get_text_encoder(encoder, **dict(encoder_kwargs or {}))


def embed_classnames(classnames: Sequence[str], encoder: EncoderLike, *, templates: Union[str, Sequence[str]] = "photo",
                     readable: bool = True, encoder_kwargs: Optional[Mapping] = None,
                     progress: bool = False) -> np.ndarray:
    """(C, E) float32: row c is the mean over templates of the encoding of class name c (see module doc)."""
    names = [str(n) for n in classnames]
    if not names:
        raise ValueError("no class names given")
    temps = resolve_templates(templates)
    enc = _as_encoder(encoder, encoder_kwargs)
    shown = [readable_classname(n) if readable else n for n in names]
    texts = [t.format(n) for n in shown for t in temps]          # class-major: C blocks of T texts
    flat = enc.encode(texts, progress=progress)
    return flat.reshape(len(names), len(temps), -1).mean(axis=1).astype(np.float32)


def _encoder_key(encoder: EncoderLike, cache_name: Optional[str]) -> str:
    key = cache_name or (encoder if isinstance(encoder, str) else encoder.name)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", key):
        raise ValueError(f"encoder cache name {key!r} must be a plain file name")
    return key


def _encoder_name(encoder: EncoderLike) -> str:
    return encoder if isinstance(encoder, str) else str(encoder.name)


def write_label_embeddings(dataset: str, encoder: EncoderLike, cache_root: Union[str, os.PathLike], *,
                           classnames: Optional[Sequence[str]] = None, templates: Union[str, Sequence[str]] = "photo",
                           readable: bool = True, encoder_kwargs: Optional[Mapping] = None,
                           cache_name: Optional[str] = None, overwrite: bool = False, progress: bool = True,
                           log: Callable[[str], None] = print) -> Path:
    """Embed the class names of ``dataset`` and save ``label_embeddings/{dataset}/{encoder}.npy`` (C, E).

    ``classnames`` default to ``data.get_classnames(dataset)``. ``encoder`` is a registry name (built
    only if the file has to be made) or a :class:`TextEncoder`; ``cache_name`` overrides the file
    name (e.g. ``"bert_padmean"`` for a variant). An existing file is kept unless ``overwrite`` or
    its record differs from this call's class names / templates / encoder (module docstring); then
    it is re-embedded and ``log`` gets one line saying why.
    """
    if classnames is None:
        from data import get_classnames
        classnames = get_classnames(dataset)
    names = [str(n) for n in classnames]
    key = _encoder_key(encoder, cache_name)
    temps = resolve_templates(templates)
    made_from = {"encoder": key, "encoder_name": _encoder_name(encoder), "templates": list(temps),
                 "readable": bool(readable), "classnames": names}
    path = CacheLayout(cache_root).label_embedding(dataset, key)
    with entry_lock(path):
        if not overwrite and _reusable(path, made_from, "label embedding", log):
            return path
        emb = embed_classnames(names, encoder, templates=temps, readable=readable,
                               encoder_kwargs=encoder_kwargs, progress=progress)
        return save_entry(path, emb, made_from)


def _reusable(path: Path, made_from: Mapping, what: str, log: Callable[[str], None]) -> bool:
    """Whether the cached ``path`` was made from ``made_from``; otherwise one note says why."""
    check = check_entry(path, made_from)
    if not check.valid and check.reason:
        log(stale_note(what, path, check.reason, "re-embedding"))
    return check.valid


def _load_captions(layout: CacheLayout, dataset: str) -> List[str]:
    path = layout.captions(dataset)
    captions = load_json(path, hint="the caption feature extraction writes it in the sample order of the "
                                    "features; or pass captions= explicitly")
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"{path} must hold a JSON list of caption strings")
    return captions


def write_caption_embeddings(dataset: str, encoder: EncoderLike, cache_root: Union[str, os.PathLike], *,
                             captions: Optional[Sequence[str]] = None, encoder_kwargs: Optional[Mapping] = None,
                             cache_name: Optional[str] = None, overwrite: bool = False, chunk_size: int = 2048,
                             progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Embed one caption per sample and save ``caption_embeddings/{dataset}/{encoder}.npy`` (N, E).

    ``captions`` default to ``captions/{dataset}.json`` of the cache (same sample order as the
    features). Work is done in chunks of ``chunk_size`` captions saved under ``{file}.parts/``
    (named by the captions' hash, so parts of another caption list are never mixed in); an
    interrupted run resumes from the finished chunks, and the parts are removed once the final
    file is written atomically. An existing file is kept while its record matches (module doc).
    """
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    layout = CacheLayout(cache_root)
    texts = list(captions) if captions is not None else _load_captions(layout, dataset)
    if not texts:
        raise ValueError(f"no captions for {dataset!r}")
    key = _encoder_key(encoder, cache_name)
    digest = sha256_json(texts)
    made_from = {"encoder": key, "encoder_name": _encoder_name(encoder), "captions_sha256": digest, "n": len(texts)}
    path = layout.caption_embedding(dataset, key)
    with entry_lock(path):
        parts_dir = path.with_name(path.name + ".parts")
        if not overwrite:
            if _reusable(path, made_from, "caption embedding", log):
                return path
        elif parts_dir.exists():
            shutil.rmtree(parts_dir)
        starts = list(range(0, len(texts), int(chunk_size)))
        enc: Optional[TextEncoder] = None
        chunks = []
        iterator = starts
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(starts, desc=f"captions[{dataset}]", unit="chunk")
        for start in iterator:
            part = parts_dir / f"{start:09d}_{int(chunk_size)}_{len(texts)}_{digest[:16]}.npy"
            stop = min(start + int(chunk_size), len(texts))
            if part.is_file():
                try:
                    emb = load_npy(part)
                    if emb.ndim == 2 and emb.shape[0] == stop - start:
                        chunks.append(emb)
                        continue
                    reason = f"it has {emb.shape} rows, expected {stop - start}"
                except CacheCorruptError as exc:
                    reason = str(exc).split("; delete")[0]
                log(stale_note("caption chunk", part, reason, "re-embedding it"))
            if enc is None:
                enc = _as_encoder(encoder, encoder_kwargs)
            emb = enc.encode(texts[start:stop]).astype(np.float32)
            save_entry(part, emb, {"chunk_of": made_from, "start": start})
            chunks.append(emb)
        result = save_entry(path, np.concatenate(chunks, axis=0), made_from)
        shutil.rmtree(parts_dir, ignore_errors=True)
        return result
