"""Aligned image-text models: the heterogeneous half of the offline hub (docs/mll.md, "The
heterogeneous offline hub").

An aligned model is an offline image backbone (``models.create_model``) whose first image stage
``f(x)`` (ImageNet logits of an EfficientNet-Lite, or the penultimate features of an OCR CNN) is
mapped linearly into the space of an offline sentence encoder (MiniLM, ``Label_embedding``):

    e(x) = normalise( ((f(x) - mu) / sd) @ W + t0 ),          text side: t(s) = normalise(MiniLM(s)).

``W`` (F, E) is a ridge regression fitted on the model's OWN source data, a few images per class
of a subset of the classes of some offline datasets' TRAIN splits: the regression target of an image
of class c is ``t_c`` = normalised mean of the MiniLM embeddings of the class name and of its synset
caption "{name} which is {definition}", and an image of one of the dataset's OTHER classes (a
negative; the model is never told that class's name) targets the embedding of the reject text
"a picture"; ``mu``, ``sd`` standardise the fit features, ``t0`` is the mean target (intercept):

    W = (Xs^T Xs / n + lam I)^-1 Xs^T (T - t0) / n,     Xs (n, F) standardised features, T (n, E).

Because the text side is the text encoder itself, zero-shot works on any class name, and best on
the concepts a model was aligned on: every model is good on its own classes and poor elsewhere, so
the hub has the per-class heterogeneity that MLL assumes (the paper's Fig. 1b). The negatives make a
model less sure on the classes it does not know, so that an ensemble can tell who knows a class.

Data hygiene: fit images come only from ``train`` splits (:data:`FIT_SPLIT`; anything else raises),
the offline targets use ``test`` splits, and :func:`assert_not_fitted_on` rejects a target whose
images a model was fitted on. Costs: the fit images' first stage is cached with
:func:`mll.vlm.cached_image_features` under ``fit-{dataset}-train-p{pool}-rs{seed}`` (one pool per
dataset shared by every model of a backbone); on graph and target images the EfficientNet models
share the ConSE stand-ins' cached ImageNet logits (same ``image_feature_key``). The ridge solve takes
milliseconds and is redone on first use in each process (nothing else to cache); ``provenance()``
records what a model was fitted on.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import zlib
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .vlm import (VLM, PackagedParts, backbone_features,
                  cached_image_features, imagenet_logits, l2_normalise, register_vlm)

__all__ = ["FitPart", "AlignedSpec", "AlignedVLM", "ALIGNED_SPECS", "FIT_SPLIT", "FIT_POOL_PER_CLASS",
           "fit_pool", "fit_ridge_alignment", "class_text_targets", "assert_not_fitted_on", "aligned_vlms"]

FIT_SPLIT = "train"             # aligners are fitted on train splits only
FIT_POOL_PER_CLASS = 30         # images per class drawn once per dataset; models use a prefix
FEATURE_STAGES = ("imagenet_logits", "penultimate")


@dataclass(frozen=True)
class FitPart:
    """Source data of one aligner from one offline dataset: the first ``per_class`` images of the
    seeded fit pool of each class in ``classes`` (``None``: every class)."""

    dataset: str
    classes: Optional[Tuple[str, ...]] = None
    per_class: int = FIT_POOL_PER_CLASS
    negatives: int = 0              # images of each OTHER class of the dataset, aligned on the reject text

    def __post_init__(self):
        if not 1 <= self.per_class <= FIT_POOL_PER_CLASS:
            raise ValueError(f"per_class must be in [1, {FIT_POOL_PER_CLASS}], got {self.per_class}")
        if not 0 <= self.negatives <= FIT_POOL_PER_CLASS:
            raise ValueError(f"negatives must be in [0, {FIT_POOL_PER_CLASS}], got {self.negatives}")


@dataclass(frozen=True)
class AlignedSpec:
    """One aligned model: backbone (``models`` registry name), first image stage (``"imagenet_logits"``
    or ``"penultimate"``), source data, ridge strength, prompt templates, logit scale. ``resizable``:
    the backbone's input may be resized to the benchmark's ``image_size`` (square-input CNNs)."""

    name: str
    backbone: str
    fit: Tuple[FitPart, ...]
    stage: str = "imagenet_logits"
    ridge: float = 1.0
    templates: Tuple[str, ...] = ("{}",)
    logit_scale: float = 50.0
    resizable: bool = True
    reject_text: str = "a picture"  # caption of the negatives (images of classes the model is not told)

    def __post_init__(self):
        if self.stage not in FEATURE_STAGES:
            raise ValueError(f"stage must be one of {FEATURE_STAGES}, got {self.stage!r}")
        if not self.fit:
            raise ValueError(f"aligned model {self.name!r} has no fit data")
        if self.ridge <= 0:
            raise ValueError(f"ridge must be > 0, got {self.ridge}")


# ------------------------------------------------------------------------------------------------
# The offline hub's aligned models. Each sees a different slice of the offline sources (class
# subsets, domains, backbones); no model covers every target class.
# ------------------------------------------------------------------------------------------------
_TOPS = ("T-shirt/top", "Pullover", "Dress", "Coat", "Shirt")
_WEAR = ("Trouser", "Sandal", "Sneaker", "Bag", "Ankle boot")
_DIG = ("0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
        "8 - eight", "9 - nine")


def _part(dataset: str, classes: Optional[Tuple[str, ...]] = None, per_class: int = FIT_POOL_PER_CLASS) -> FitPart:
    """Some classes of a dataset, with the dataset's other classes as negatives (reject text)."""
    return FitPart(dataset, classes, per_class, negatives=0 if classes is None else FIT_POOL_PER_CLASS)


ALIGNED_SPECS: Tuple[AlignedSpec, ...] = (
    AlignedSpec("aligned-lite0-tops", "efficientnet_lite0", (_part("fashion_mnist", _TOPS), _part("textures"))),
    AlignedSpec("aligned-lite1-wear", "efficientnet_lite1", (_part("fashion_mnist", _WEAR), _part("lfw_faces"))),
    AlignedSpec("aligned-lite2-mnist-low", "efficientnet_lite2", (_part("mnist", _DIG[:5]), _part("easyvqa_shapes"))),
    AlignedSpec("aligned-lite0-mnist-high", "efficientnet_lite0",
                (_part("mnist", _DIG[5:]), _part("easyvqa_colors", ("black", "blue", "brown", "gray")))),
    AlignedSpec("aligned-lite1-colors", "efficientnet_lite1",
                (_part("easyvqa_colors", ("green", "red", "teal", "yellow")), _part("digits", _DIG[:5]))),
    AlignedSpec("aligned-lite2-digits", "efficientnet_lite2", (_part("digits", _DIG[5:]), _part("textures", per_class=5))),
    AlignedSpec("aligned-ocr-generalist", "ocr_rec",
                tuple(_part(d, per_class=3) for d in ("fashion_mnist", "mnist", "digits", "easyvqa_shapes",
                                                      "easyvqa_colors")),
                stage="penultimate", resizable=False),
)


# ------------------------------------------------------------------------------------------------
# Fit data
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _fit_dataset(name: str):
    import data
    return data.get_dataset(name, FIT_SPLIT)


def fit_pool(dataset: str, random_state: int = 0, per_class: int = FIT_POOL_PER_CLASS) -> np.ndarray:
    """(C, P) indices into ``dataset``'s train split: row c = the first P images of class c in a
    permutation seeded by ``(random_state, crc32(dataset))`` (-1 pads classes with fewer images)."""
    ds = _fit_dataset(dataset)
    y = np.asarray(ds.targets, dtype=np.int64)
    rng = np.random.default_rng([int(random_state), zlib.crc32(dataset.encode())])
    out = np.full((len(ds.classes), per_class), -1, dtype=np.int64)
    for c in range(len(ds.classes)):
        members = rng.permutation(np.flatnonzero(y == c))[:per_class]
        out[c, :members.size] = members
    return out


def _pool_key(dataset: str, random_state: int) -> str:
    return f"fit-{dataset}-{FIT_SPLIT}-p{FIT_POOL_PER_CLASS}-rs{int(random_state)}"


def class_text_targets(encode, dataset: str, classnames: Sequence[str]) -> np.ndarray:
    """(C, E): t_c = normalised mean of the text embeddings of class c's name and of its synset
    caption (``offline_class_synsets.json`` + WordNet); ``encode(texts) -> (M, E)``."""
    from .graph import offline_class_synsets
    from .wordnet import load_wordnet
    wn = load_wordnet()
    wnids = offline_class_synsets(dataset, list(classnames))
    texts = [t for c, w in zip(classnames, wnids) for t in (c, wn[w].caption)]
    emb = l2_normalise(np.asarray(encode(texts), dtype=np.float64))
    return l2_normalise(emb.reshape(len(classnames), 2, -1).mean(axis=1))


def fit_ridge_alignment(features: np.ndarray, targets: np.ndarray, ridge: float) -> Dict[str, np.ndarray]:
    """Ridge map from standardised features to unit text targets (module docstring).

    ``features`` (n, F), ``targets`` (n, E) -> ``{"W": (F, E), "mu": (F,), "sd": (F,), "t0": (E,)}``
    (float64; the inputs are not modified)."""
    x = np.asarray(features, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if x.ndim != 2 or t.ndim != 2 or x.shape[0] != t.shape[0] or x.shape[0] < 2:
        raise ValueError(f"need (n, F) features and (n, E) targets with n >= 2, got {x.shape} and {t.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t))):
        raise ValueError("features and targets must be finite")
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    n = x.shape[0]
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    xs = (x - mu) / sd
    t0 = t.mean(axis=0)
    gram = xs.T @ xs / n + ridge * np.eye(x.shape[1])
    w = np.linalg.solve(gram, xs.T @ (t - t0) / n)
    return {"W": w, "mu": mu, "sd": sd, "t0": t0}


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
class AlignedVLM(PackagedParts, VLM):
    """A backbone + a ridge map into a text encoder's space, fitted on ``spec.fit`` (module docstring).

    ``backbone``/``text_encoder`` default to the packaged models (built once per process, shared
    with the ConSE stand-ins); ``image_size`` resizes square-input backbones; ``cache_dir`` caches the
    fit images' first stage (and is where the benchmark caches the rest)."""

    def __init__(self, spec: AlignedSpec, *, backbone=None, text_encoder=None, text_encoder_name: str = "minilm",
                 image_size: Optional[int] = None, cache_dir: Optional[str | os.PathLike] = None,
                 random_state: int = 0, batch_size: int = 32, progress: bool = False):
        if image_size is not None and int(image_size) < 32:
            raise ValueError(f"image_size must be >= 32 pixels or None, got {image_size}")
        self.spec = spec
        self.name = spec.name
        self.templates = tuple(spec.templates)
        self.logit_scale = float(spec.logit_scale)
        self.batch_size = int(batch_size)
        self.image_size = int(image_size) if (image_size is not None and spec.resizable) else None
        self.cache_dir = cache_dir
        self.random_state = int(random_state)
        self.progress = progress
        self._init_parts(spec.backbone, backbone, text_encoder, text_encoder_name)
        self._alignment: Optional[Dict[str, np.ndarray]] = None
        self._fit_info: Optional[dict] = None

    # -- images ---------------------------------------------------------------------------------
    @property
    def image_feature_key(self) -> str:
        size = "native" if self.image_size is None else f"{self.image_size}px"
        if self.spec.stage == "imagenet_logits":          # identical to ConSEVLM's key: shared cache
            return f"imagenet_logits-{self.spec.backbone}-{size}"
        return f"features-{self.spec.backbone}-{size}"

    def image_features(self, images: Sequence) -> np.ndarray:
        if self.spec.stage == "imagenet_logits":
            return imagenet_logits(self.backbone, images, image_size=self.image_size, batch_size=self.batch_size,
                                   name=self.spec.backbone)
        return backbone_features(self.backbone, images, image_size=self.image_size, batch_size=self.batch_size)

    def embed_image_features(self, features: np.ndarray) -> np.ndarray:
        """e = normalise(((f - mu) / sd) @ W + t0): (N, F) -> (N, E)."""
        a = self.alignment
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != a["W"].shape[0]:
            raise ValueError(f"{self.name}: expected (N, {a['W'].shape[0]}) features, got {f.shape}")
        return l2_normalise(((f - a["mu"]) / a["sd"]) @ a["W"] + a["t0"])

    # -- fitting --------------------------------------------------------------------------------
    def fit_indices(self) -> Dict[str, np.ndarray]:
        """dataset -> sorted indices into its TRAIN split of the images this model is fitted on."""
        out: Dict[str, List[int]] = {}
        for part in self.spec.fit:
            ds = _fit_dataset(part.dataset)
            pool = fit_pool(part.dataset, self.random_state)
            classes = list(ds.classes) if part.classes is None else list(part.classes)
            unknown = [c for c in classes if c not in ds.classes]
            if unknown:
                raise ValueError(f"{self.name}: {part.dataset} has no classes {unknown}")
            rows = pool[[list(ds.classes).index(c) for c in classes], :part.per_class].ravel()
            others = [j for j, c in enumerate(ds.classes) if c not in classes]
            rows = np.concatenate([rows, pool[others, :part.negatives].ravel()])
            out.setdefault(part.dataset, []).extend(int(i) for i in rows if i >= 0)
        return {d: np.array(sorted(set(v)), dtype=np.int64) for d, v in out.items()}

    def _fit(self) -> None:
        feats, targets = [], []
        for part in self.spec.fit:
            ds = _fit_dataset(part.dataset)
            if ds.split != FIT_SPLIT:
                raise ValueError(f"{self.name}: aligners are fitted on {FIT_SPLIT!r} splits only, got {ds.split!r}")
            pool = fit_pool(part.dataset, self.random_state)
            flat = pool.ravel()
            valid = flat[flat >= 0]
            record = None
            if self.cache_dir is not None:
                from torch.utils.data import Subset

                from data.fingerprint import dataset_record
                record = {"dataset": dataset_record(Subset(ds, [int(i) for i in valid]))}
            pool_feats = cached_image_features(self, _pool_key(part.dataset, self.random_state),
                                               lambda: [ds[int(i)][0] for i in valid], self.cache_dir,
                                               progress=self.progress, images_record=record)
            row_of = {int(i): r for r, i in enumerate(valid)}
            classes = list(ds.classes) if part.classes is None else list(part.classes)
            text = class_text_targets(self.encode_texts, part.dataset, classes)
            for j, c in enumerate(classes):
                idx = [int(i) for i in pool[list(ds.classes).index(c), :part.per_class] if i >= 0]
                feats.append(pool_feats[[row_of[i] for i in idx]])
                targets.append(np.repeat(text[j:j + 1], len(idx), axis=0))
            if part.negatives:
                reject = self.encode_texts([self.spec.reject_text]).astype(np.float64)
                for c in (c for c in ds.classes if c not in classes):
                    idx = [int(i) for i in pool[list(ds.classes).index(c), :part.negatives] if i >= 0]
                    feats.append(pool_feats[[row_of[i] for i in idx]])
                    targets.append(np.repeat(reject, len(idx), axis=0))
        x, t = np.concatenate(feats), np.concatenate(targets)
        self._alignment = fit_ridge_alignment(x, t, self.spec.ridge)
        self._fit_info = {"n_images": int(x.shape[0]), "feature_dim": int(x.shape[1])}

    @property
    def alignment(self) -> Dict[str, np.ndarray]:
        """The fitted map ``{"W", "mu", "sd", "t0"}`` (fitted on first use)."""
        if self._alignment is None:
            self._fit()
        return self._alignment

    def fitted_on(self) -> Dict[str, Tuple[str, np.ndarray]]:
        """dataset -> (split, indices) of every fit image."""
        return {d: (FIT_SPLIT, idx) for d, idx in self.fit_indices().items()}

    def provenance(self) -> dict:
        """What the model was fitted on (JSON-serialisable)."""
        self.alignment
        return {"name": self.name, "spec": asdict(self.spec), "image_feature_key": self.image_feature_key,
                "text_encoder": self.text_encoder_name, "random_state": self.random_state,
                "fit_split": FIT_SPLIT, "pool_per_class": FIT_POOL_PER_CLASS, **self._fit_info,
                "fit_indices_sha1": {d: hashlib.sha1(json.dumps(idx.tolist()).encode()).hexdigest()[:12]
                                     for d, idx in self.fit_indices().items()}}


def assert_not_fitted_on(vlms: Iterable[VLM], tasks: Iterable) -> None:
    """Raise ``ValueError`` when a target task's images are among an aligned model's fit images.

    ``tasks``: objects with ``dataset`` (``.name``, ``.split``, set by ``data.get_dataset``) and
    ``indices``. Non-aligned models are skipped. Aligners only ever read train splits, so a test-split
    target always passes; a train-split target passes only if it shares no index with the fit set."""
    tasks = list(tasks)
    for vlm in vlms:
        if not isinstance(vlm, AlignedVLM):
            continue
        fitted = vlm.fitted_on()
        for t in tasks:
            name, split = getattr(t.dataset, "name", None), getattr(t.dataset, "split", None)
            if name is None or split is None:
                raise ValueError(f"target {getattr(t, 'name', t)!r}: its dataset has no name/split to check "
                                 "against the aligners' fit data")
            if name in fitted and fitted[name][0] == split:
                shared = np.intersect1d(fitted[name][1], np.asarray(t.indices, dtype=np.int64))
                if shared.size:
                    raise ValueError(f"aligned model {vlm.name!r} was fitted on {shared.size} images of target "
                                     f"{t.name!r} ({name} {split} split)")


def aligned_vlms() -> List[str]:
    """Names of the aligned models of the offline hub."""
    return [s.name for s in ALIGNED_SPECS]


def _register() -> None:
    for spec in ALIGNED_SPECS:
        register_vlm(spec.name, "offline", functools.partial(AlignedVLM, spec))


_register()
