"""The 13 ViT-family models of the EMMS paper (``model_sources.vit_group`` of the ground truth).

Architectures come from timm (DeiT, ViT for DINO / MoCo-v3, PVT v2, Swin) or from
:mod:`models.pvt_v1` (PVT v1, absent from timm). Weights are the ORIGINAL release checkpoints read
from the weights directory (file names below); the timm checkpoint filters convert their key names
(e.g. Swin's and PVT v2's original layouts), a ``model``/``state_dict`` wrapper is unwrapped and a
key prefix (MoCo-v3's ``module.base_encoder.``) is stripped. Loading is strict except that the
projection/classifier ``head.*`` of a self-supervised checkpoint is dropped.

Feature (as in the EMMS reference code): the INPUT of the final norm layer, pooled --
token 0 (CLS) for DeiT / DINO / MoCo-v3 / PVT v1, the token mean for PVT v2 (input of the last
stage's norm) and the mean over the 7 x 7 map for Swin. Source head: the ImageNet-1k classifier of
the supervised models; DINO and MoCo-v3 have none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import timm
import torch
from torch import nn

from .base import FeatureModel, HookedFeatureModel, Preprocess, pool_cls_token, pool_spatial_mean, pool_token_mean
from .pvt_v1 import PVT_CONFIGS, create_pvt_v1
from .registry import register_model
from .transforms import IMAGENET_MEAN, IMAGENET_STD, center_crop_transform
from .weights import require_weights

__all__ = ["ViTSpec", "VIT_SPECS", "load_local_checkpoint"]


@dataclass(frozen=True)
class ViTSpec:
    name: str
    arch: str                      # timm architecture, or a PVT v1 variant of models.pvt_v1
    filename: str                  # checkpoint file in the weights directory
    source: str                    # where the file comes from (for the error message / docs)
    feature_layer: str             # dotted path of the norm whose input is the feature
    pool: Callable[[torch.Tensor], torch.Tensor]
    supervised: bool               # has a 1000-way ImageNet head
    prefix: str = ""               # key prefix to strip from the checkpoint
    kwargs: dict = field(default_factory=dict)


_FB = "https://dl.fbaipublicfiles.com"
VIT_SPECS = (
    ViTSpec("deit_tiny", "deit_tiny_patch16_224", "deit_tiny_patch16_224-a1311bcf.pth",
            f"{_FB}/deit/deit_tiny_patch16_224-a1311bcf.pth", "norm", pool_cls_token, True),
    ViTSpec("deit_small", "deit_small_patch16_224", "deit_small_patch16_224-cd65a155.pth",
            f"{_FB}/deit/deit_small_patch16_224-cd65a155.pth", "norm", pool_cls_token, True),
    ViTSpec("deit_base", "deit_base_patch16_224", "deit_base_patch16_224-b5f2ef4d.pth",
            f"{_FB}/deit/deit_base_patch16_224-b5f2ef4d.pth", "norm", pool_cls_token, True),
    ViTSpec("dino_small", "vit_small_patch16_224", "dino_deitsmall16_pretrain.pth",
            f"{_FB}/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth", "norm", pool_cls_token, False),
    ViTSpec("dino_base", "vit_base_patch16_224", "dino_vitbase16_pretrain.pth",
            f"{_FB}/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth", "norm", pool_cls_token, False),
    ViTSpec("mocov3_small", "vit_small_patch16_224", "vit-s-300ep.pth.tar",
            f"{_FB}/moco-v3/vit-s-300ep/vit-s-300ep.pth.tar (MoCo-v3 ViT-S: 12 heads)", "norm",
            pool_cls_token, False, prefix="module.base_encoder.", kwargs=dict(num_heads=12)),
    ViTSpec("pvtv2_b2", "pvt_v2_b2", "pvt_v2_b2.pth",
            "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b2.pth", "stages.3.norm",
            pool_token_mean, True),
    ViTSpec("pvtv2_b3", "pvt_v2_b3", "pvt_v2_b3.pth",
            "https://github.com/whai362/PVT/releases/download/v2/pvt_v2_b3.pth", "stages.3.norm",
            pool_token_mean, True),
    ViTSpec("pvt_tiny", "pvt_tiny", "pvt_tiny.pth", "whai362/PVT v1 release pvt_tiny.pth", "norm",
            pool_cls_token, True),
    ViTSpec("pvt_small", "pvt_small", "pvt_small.pth", "whai362/PVT v1 release pvt_small.pth", "norm",
            pool_cls_token, True),
    ViTSpec("pvt_medium", "pvt_medium", "pvt_medium.pth", "whai362/PVT v1 release pvt_medium.pth", "norm",
            pool_cls_token, True),
    ViTSpec("swin_t", "swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224.pth",
            "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth",
            "norm", pool_spatial_mean, True),
    ViTSpec("swin_s", "swin_small_patch4_window7_224", "swin_small_patch4_window7_224.pth",
            "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_small_patch4_window7_224.pth",
            "norm", pool_spatial_mean, True),
)


def load_local_checkpoint(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """Read a checkpoint file, unwrap a ``model`` / ``state_dict`` entry and strip ``prefix``."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    if prefix:
        obj = {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}
        if not obj:
            raise ValueError(f"{path}: no key starts with the expected prefix {prefix!r}")
    return obj


def _new_arch(spec: ViTSpec) -> nn.Module:
    num_classes = 1000 if spec.supervised else 0
    if spec.arch in PVT_CONFIGS:
        return create_pvt_v1(spec.arch, num_classes=num_classes)
    return timm.create_model(spec.arch, pretrained=False, num_classes=num_classes, **spec.kwargs)


def _load(spec: ViTSpec, net: nn.Module, path: Path) -> None:
    state = load_local_checkpoint(path, spec.prefix)
    if spec.arch not in PVT_CONFIGS:
        filter_fn = getattr(__import__(type(net).__module__, fromlist=["checkpoint_filter_fn"]),
                            "checkpoint_filter_fn", None)
        if filter_fn is not None:
            state = filter_fn(state, net)
    if not spec.supervised:
        state = {k: v for k, v in state.items() if not k.startswith("head")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"{spec.name}: checkpoint {path} does not match the {spec.arch} architecture "
                           f"(missing {missing[:8]}, unexpected {unexpected[:8]})")


def _build_network(spec: ViTSpec, weights_dir: Path | None, pretrained: bool) -> nn.Module:
    path = require_weights(weights_dir, spec.filename, model=spec.name,
                           what=f"the original checkpoint {spec.filename} ({spec.source})") if pretrained else None
    net = _new_arch(spec)
    if path is not None:
        _load(spec, net, path)
    return net


def _preprocess(spec: ViTSpec) -> Preprocess:
    return center_crop_transform(224, crop_pct=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic")


def _build(spec: ViTSpec, weights_dir, device: torch.device, pretrained: bool) -> FeatureModel:
    net = _build_network(spec, weights_dir, pretrained)
    return HookedFeatureModel(network=net, feature_layer=net.get_submodule(spec.feature_layer), pool=spec.pool,
                              returns_logits=spec.supervised, name=spec.name, group="vit",
                              feature_dim=net.num_features, input_hw=(224, 224), device=device,
                              num_source_classes=1000 if spec.supervised else None,
                              preprocess=_preprocess(spec))


def _build_trainable(spec: ViTSpec, num_classes: int, weights_dir) -> tuple[nn.Module, Preprocess]:
    net = _build_network(spec, weights_dir, pretrained=True)
    net.reset_classifier(num_classes)
    return net, _preprocess(spec)


for _spec in VIT_SPECS:
    register_model(_spec.name, group="vit", weights=_spec.filename,
                   description=f"{_spec.arch} ({_spec.source})",
                   trainable=partial(_build_trainable, _spec))(partial(_build, _spec))
