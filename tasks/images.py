"""Image side of the task candidates: pooled features and spatial feature maps of a registered
backbone (``models.create_model``) over an in-memory image array, cached with provenance records.

* ``"pooled"``: the backbone's own feature (``FeatureModel.features``, e.g. the classifier input
  of EfficientNet-Lite, DINOv2's CLS token, the pooled OCR maps), (N, D).
* ``"map"``: the last spatial feature map before pooling, average-pooled to at most
  ``MAP_SIDE x MAP_SIDE`` cells (``adaptive_avg_pool2d``), stored float16 as (N, C, g, g). Read by
  :data:`SPATIAL_READERS` keyed by the model's class (timm networks: ``forward_features``, B x C x h x w;
  ONNX graphs: the raw feature tensor, ViT tokens without the CLS token reshaped to a square grid).

Every image goes through the model's own test-time preprocessing (``model.preprocess``), then, when
the task states an input resolution, the protocol's shrink (``finetuning.engine.ReducedResolution``:
shorter side ``resolution``, sides a multiple of ``multiple``; inputs already smaller keep their
size): the same tensors the task's fine-tuned ground truth trains on (:mod:`tasks.heads`). Files:
``{cache}/task_images/{kind}/{dataset}/{backbone}.npy`` with a ``data.cache`` record of the images'
fingerprint and the model record (``models.pipeline.model_record``); reused only while both match.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from common import Registry
from data.base import to_rgb_pil
from data.cache import CacheLayout, check_entry, entry_lock, load_npy, save_entry, stale_note

__all__ = ["SPATIAL_READERS", "MAP_SIDE", "spatial_map", "image_inputs", "image_arrays", "cached_image_arrays", "grid_pool", "as_pil", "image_array_path"]

MAP_SIDE = 6

#: FeatureModel class name -> fn(model, x (B,3,H,W) on model.device) -> (B, C, h, w) tensor
SPATIAL_READERS: Registry[Callable] = Registry("spatial feature reader")


@SPATIAL_READERS.register("HookedFeatureModel")
def _hooked_map(model, x: torch.Tensor) -> torch.Tensor:
    net = model.network
    if not hasattr(net, "forward_features"):
        raise ValueError(f"{model.name}: its network has no forward_features(); no spatial map to read")
    out = net.forward_features(x)
    if out.ndim != 4:
        raise ValueError(f"{model.name}: forward_features gave shape {tuple(out.shape)}, expected B x C x h x w")
    return out


@SPATIAL_READERS.register("OnnxFeatureModel")
def _onnx_map(model, x: torch.Tensor) -> torch.Tensor:
    arr = model.session.run([model.spec.feature_tensor], {model.spec.input_name: x.detach().cpu().numpy()})[0]
    if arr.ndim == 3:                                   # ViT tokens B x (1 + s*s) x C -> B x C x s x s
        side = int(math.isqrt(arr.shape[1] - 1))
        if side * side != arr.shape[1] - 1:
            raise ValueError(f"{model.name}: {arr.shape[1]} tokens are not 1 CLS + a square grid")
        arr = arr[:, 1:].reshape(arr.shape[0], side, side, arr.shape[2]).transpose(0, 3, 1, 2)
    if arr.ndim != 4:
        raise ValueError(f"{model.name}: feature tensor of shape {arr.shape} is not a spatial map")
    return torch.from_numpy(np.ascontiguousarray(arr))


@lru_cache(maxsize=4)
def _lite_torch_network(spec):
    from models.efficientnet_lite import _build_network
    return _build_network(spec, True).eval()


@SPATIAL_READERS.register("LiteOrtFeatureModel")
def _lite_ort_map(model, x: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite served by onnxruntime: its (same-weights) torch network's ``forward_features``."""
    return _lite_torch_network(model._multi.spec).forward_features(x.cpu())


def spatial_map(model, x: torch.Tensor) -> torch.Tensor:
    """(B, C, g, g) float map of ``model`` on the preprocessed batch ``x``, g = min(h, MAP_SIDE)."""
    reader = SPATIAL_READERS[type(model).__name__]
    with torch.no_grad():
        m = reader(model, x.to(model.device)).float()
    side = min(MAP_SIDE, m.shape[2], m.shape[3])
    return F.adaptive_avg_pool2d(m, side)


def grid_pool(maps: np.ndarray, side: int = 3) -> np.ndarray:
    """(N, C, g, g) maps -> (N, C * side * side) cell means (``adaptive_avg_pool2d``), float32."""
    t = torch.from_numpy(np.asarray(maps, dtype=np.float32))
    return F.adaptive_avg_pool2d(t, side).flatten(1).numpy()


def as_pil(image):
    """A uint8 (H, W[, 3]) array or an image file path -> RGB PIL image."""
    if isinstance(image, (str, Path)):
        from PIL import Image
        with Image.open(image) as im:
            return im.convert("RGB")
    return to_rgb_pil(np.asarray(image))


def image_inputs(preprocess: Callable, images, resolution: int | None = None, multiple: int = 1) -> torch.Tensor:
    """(N, 3, H, W) float32 inputs of N images (:func:`as_pil`) through ``preprocess`` and the protocol's
    ``ReducedResolution(resolution, multiple)`` (``resolution=None``: the preprocess's own size)."""
    from finetuning.engine import ReducedResolution

    pipeline = ReducedResolution(preprocess, resolution, multiple)
    if len(images) == 0:
        raise ValueError("no images given")
    return torch.stack([pipeline(as_pil(im)) for im in images])


def image_arrays(model, images, kind: str, *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """Run ``model`` over N images (uint8 arrays or file paths, :func:`as_pil`) through its own
    ``model.preprocess``: ``kind`` "pooled" -> (N, D) float32, "map" -> (N, C, g, g) float16."""
    from tqdm.auto import tqdm

    if kind not in ("pooled", "map"):
        raise ValueError(f"kind must be 'pooled' or 'map', got {kind!r}")
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"{model.name}[{kind}]", disable=not progress,
                      leave=False):
        x = image_inputs(model.preprocess, images[start:start + batch_size])
        if kind == "pooled":
            out.append(model.features(x).cpu().numpy().astype(np.float32))
        else:
            out.append(spatial_map(model, x).cpu().numpy().astype(np.float16))
    if not out:
        raise ValueError("no images given")
    return np.concatenate(out)


def image_array_path(cache_dir, kind: str, dataset: str, backbone: str) -> Path:
    """``{cache}/task_images/{kind}/{dataset}/{backbone}.npy``."""
    return CacheLayout(cache_dir).root / "task_images" / kind / dataset / f"{backbone}.npy"


def cached_image_arrays(cache_dir, dataset: str, fingerprint: str, images, backbone: str, kind: str, *,
                        resolution: int | None = None, multiple: int = 1, device: str | None = None,
                        batch_size: int = 32, progress: bool = True,
                        log: Callable[[str], None] = print) -> np.ndarray:
    """:func:`image_arrays` of registered model ``backbone``, cached (module docstring).

    ``fingerprint`` identifies ``images`` (their content and order); ``dataset`` names the folder."""
    from models import create_model
    from models.pipeline import model_record

    if resolution is None:
        model = create_model(backbone, device=device)
    else:                     # the registered extractor at the protocol's input size (finetuning.protocol)
        from finetuning import FinetuneConfig
        from finetuning.protocol import protocol_feature_model

        model = protocol_feature_model(backbone, FinetuneConfig(resolution=int(resolution), size_multiple=int(multiple)),
                                       device=device)
    made_from = {"dataset": {"fingerprint": fingerprint, "n": int(len(images))},
                 "model": model_record(backbone, model), "kind": kind, "map_side": MAP_SIDE,
                 "resolution": resolution, "multiple": int(multiple)}
    path = image_array_path(cache_dir, kind, dataset, backbone)
    with entry_lock(path):
        check = check_entry(path, made_from)
        if check.valid:
            return load_npy(path)
        if check.reason:
            log(stale_note(f"{kind} image features", path, check.reason))
        arr = image_arrays(model, images, kind, batch_size=batch_size, progress=progress)
        save_entry(path, arr, made_from)
        return arr
