"""Trainable image backbones of the task candidates: what :mod:`tasks.images` extracts, as a torch
module whose weights the ground truth fine-tunes.

``trainable_backbone(name, kind)`` builds ``models.create_trainable(name, 1)`` (the registered
network with its pre-trained weights, every parameter trainable) and wraps it so that
``module(x)`` returns, for the preprocessed batch ``x`` (B, 3, H, W):

* ``kind="pooled"``: the candidate's pooled feature (B, D), the tensor ``FeatureModel.features``
  gives (EfficientNet-Lite: the classifier input; ONNX graphs: the pooled feature tensor, DINOv2's
  CLS token);
* ``kind="map"``: the spatial map (B, C, g, g) that ``tasks.images.spatial_map`` gives,
  adaptive-average-pooled to ``g = min(h, MAP_SIDE)`` cells (ViT tokens without CLS -> a square grid).

The new linear head of ``create_trainable`` is not used. Readers are looked up by the class name of
the trainable network (:data:`TRAINABLE_READERS`), as :data:`tasks.images.SPATIAL_READERS` is keyed
by the feature model's class; a family without a reader fails naming the class. At the pre-trained
weights the output equals the frozen extraction (tested, ONNX vs its torch conversion ~1e-4).
"""
from __future__ import annotations

import math
from typing import Callable, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from common import Registry

__all__ = ["TRAINABLE_READERS", "TrainableBackbone", "trainable_backbone"]

#: class name of a ``create_trainable`` network -> {"pooled": fn(net, x) -> (B, D), "map": fn(net, x) -> (B, C, h, w)}
TRAINABLE_READERS: Registry[dict] = Registry("trainable feature reader")


def _tokens_to_map(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim == 4:
        return t
    if t.ndim != 3:
        raise ValueError(f"{name}: feature tensor of shape {tuple(t.shape)} is not a spatial map")
    side = math.isqrt(t.shape[1] - 1)
    if side * side != t.shape[1] - 1:
        raise ValueError(f"{name}: {t.shape[1]} tokens are not 1 CLS + a square grid")
    return t[:, 1:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)


TRAINABLE_READERS.add("EfficientNet", {   # timm: forward_features = conv_head + bn2 output
    "pooled": lambda net, x: net.forward_head(net.forward_features(x), pre_logits=True),
    "map": lambda net, x: net.forward_features(x),
})
TRAINABLE_READERS.add("TruncatedLite", {
    "pooled": lambda net, x: net.features(x),
    "map": lambda net, x: net.blocks(net.bn1(net.conv_stem(x))),
})
TRAINABLE_READERS.add("OnnxTrainable", {
    "pooled": lambda net, x: net.features(x),
    "map": lambda net, x: _tokens_to_map(net.backbone(x), type(net).__name__),
})


class TrainableBackbone(nn.Module):
    """``net`` read as ``kind`` (module docstring); ``map_side`` caps the pooled map's cells."""

    def __init__(self, net: nn.Module, kind: str, read: Callable, map_side: int):
        super().__init__()
        self.net, self.kind, self._read, self.map_side = net, kind, read, int(map_side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._read(self.net, x)
        if self.kind == "map":
            out = F.adaptive_avg_pool2d(out, min(self.map_side, out.shape[2], out.shape[3]))
        return out


def trainable_backbone(name: str, kind: str, *, weights_dir=None) -> Tuple[TrainableBackbone, Callable]:
    """(trainable module, its preprocess) of registered model ``name`` read as ``kind``."""
    from models import create_trainable

    from .images import MAP_SIDE

    if kind not in ("pooled", "map"):
        raise ValueError(f"kind must be 'pooled' or 'map', got {kind!r}")
    net, preprocess = create_trainable(name, 1, weights_dir=weights_dir)
    cls = type(net).__name__
    if cls not in TRAINABLE_READERS:
        raise NotImplementedError(f"{name}: no trainable reader for its network class {cls!r}; register one in "
                                  f"tasks.trainable.TRAINABLE_READERS (known: {sorted(TRAINABLE_READERS)})")
    return TrainableBackbone(net, kind, TRAINABLE_READERS[cls][kind], MAP_SIDE), preprocess
