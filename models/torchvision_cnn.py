"""The 11 supervised ImageNet CNNs of the EMMS paper (torchvision architectures).

Feature: the input of the final ImageNet classifier (``fc`` / ``classifier`` / ``classifier[1]``),
as the EMMS reference code reads it with a forward hook; source head: that 1000-way classifier.
Weights: the torchvision ImageNet-1k (V1) files, read from the weights directory under their
torchvision file names (e.g. ``resnet50-0676ba61.pth``; the name is the last component of the
weights enum's URL). GoogLeNet and Inception-v3 are built as torchvision builds its pre-trained
versions (``transform_input=True``; the auxiliary heads are loaded, then dropped). Inception-v3
takes 299 px inputs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.transforms import Compose

from .base import FeatureModel, HookedFeatureModel, Preprocess, pool_identity
from .registry import register_model
from .transforms import _ToRGB
from .weights import require_weights

__all__ = ["CNNSpec", "CNN_SPECS"]


@dataclass(frozen=True)
class CNNSpec:
    name: str
    weights_enum: str                  # torchvision weights enum (IMAGENET1K_V1 is used)
    classifier: str                    # dotted path of the final nn.Linear
    kwargs: dict = field(default_factory=dict)
    drop_aux: tuple[str, ...] = ()     # auxiliary heads removed after loading

    @property
    def weights(self):
        return getattr(tvm, self.weights_enum).IMAGENET1K_V1

    @property
    def filename(self) -> str:
        return self.weights.url.rsplit("/", 1)[1]

    @property
    def input_size(self) -> int:
        return int(self.weights.transforms().crop_size[0])


CNN_SPECS = (
    CNNSpec("resnet34", "ResNet34_Weights", "fc"),
    CNNSpec("resnet50", "ResNet50_Weights", "fc"),
    CNNSpec("resnet101", "ResNet101_Weights", "fc"),
    CNNSpec("resnet152", "ResNet152_Weights", "fc"),
    CNNSpec("densenet121", "DenseNet121_Weights", "classifier"),
    CNNSpec("densenet169", "DenseNet169_Weights", "classifier"),
    CNNSpec("densenet201", "DenseNet201_Weights", "classifier"),
    CNNSpec("mnasnet1_0", "MNASNet1_0_Weights", "classifier.1"),
    CNNSpec("mobilenet_v2", "MobileNet_V2_Weights", "classifier.1"),
    CNNSpec("googlenet", "GoogLeNet_Weights", "fc",
            dict(aux_logits=True, transform_input=True, init_weights=False), ("aux1", "aux2")),
    CNNSpec("inception_v3", "Inception_V3_Weights", "fc",
            dict(aux_logits=True, transform_input=True, init_weights=False), ("AuxLogits",)),
)

# Old DenseNet checkpoints name "norm.1" what the module calls "norm1" (torchvision fixes the same).
_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def _fix_densenet_keys(state_dict: dict) -> dict:
    out = {}
    for key, value in state_dict.items():
        m = _DENSENET_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def _build_network(spec: CNNSpec, weights_dir: Path | None, pretrained: bool) -> nn.Module:
    path = require_weights(weights_dir, spec.filename, model=spec.name,
                           what=f"the torchvision ImageNet-1k weights {spec.filename} ({spec.weights.url})") \
        if pretrained else None
    net = getattr(tvm, spec.name)(weights=None, **spec.kwargs)
    if path is not None:
        state = _fix_densenet_keys(torch.load(path, map_location="cpu", weights_only=True))
        net.load_state_dict(state, strict=True)
    if spec.drop_aux:
        net.aux_logits = False
        for attr in spec.drop_aux:
            setattr(net, attr, None)
    return net


def _preprocess(spec: CNNSpec) -> Preprocess:
    return Compose([_ToRGB(), spec.weights.transforms()])


def _build(spec: CNNSpec, weights_dir, device: torch.device, pretrained: bool) -> FeatureModel:
    net = _build_network(spec, weights_dir, pretrained)
    head = net.get_submodule(spec.classifier)
    return HookedFeatureModel(network=net, feature_layer=head, pool=pool_identity, returns_logits=True,
                              name=spec.name, group="cnn", feature_dim=head.in_features,
                              input_hw=(spec.input_size, spec.input_size), device=device,
                              num_source_classes=head.out_features, preprocess=_preprocess(spec))


def _build_trainable(spec: CNNSpec, num_classes: int, weights_dir) -> tuple[nn.Module, Preprocess]:
    net = _build_network(spec, weights_dir, pretrained=True)
    parent_path, _, attr = spec.classifier.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    setattr(parent, attr, nn.Linear(getattr(parent, attr).in_features, num_classes))
    return net, _preprocess(spec)


for _spec in CNN_SPECS:
    register_model(_spec.name, group="cnn", weights=_spec.filename,
                   description=f"torchvision {_spec.name}, ImageNet-1k V1 weights ({_spec.input_size}px)",
                   trainable=partial(_build_trainable, _spec))(partial(_build, _spec))
