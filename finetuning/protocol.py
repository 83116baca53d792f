"""What the metrics see = what fine-tuning starts from: one image pipeline and one set of images.

The ground truth is only a fair yardstick for the transferability metrics when both look at the
same thing (the papers' protocol): the metrics' features are extracted from the protocol's
training images (:func:`train_subset`, the images fine-tuning trains on) through the protocol's
image pipeline (:func:`extraction_preprocess`: the model's own preprocessing, then the shrink to
the protocol resolution, :class:`finetuning.engine.ReducedResolution`).

Resolution of a (model, dataset) pair (:func:`protocol_input_size`): the shorter side of the
model's native input is shrunk to ``config.resolution`` px (aspect ratio kept, sides rounded to a
multiple of ``config.size_multiple``); a model whose native input is already smaller keeps it.
With the committed protocol (112 px, multiple 14) that is 112 x 112 for the ImageNet CNNs,
DINOv2-S and the OCR detector, native 48 x 320 / 48 x 192 for the OCR text-line networks and
native 28-64 px for the networks pre-trained here; the rule does not depend on the dataset (the
offline datasets' images are 8-32 px, below every resolution used).

:func:`protocol_feature_model` builds the registered feature extractor with that pipeline; when
the registered extractor cannot take the reduced input (an ONNX graph exported for a fixed size,
e.g. DINOv2-S at 224 px), the features are read at the input of the new head of the trainable
network (:class:`TrainableFeatureModel`: the same pre-trained weights fine-tuning starts from).
:func:`protocol_extract` fills a feature cache with it (``models.pipeline.extract_to_cache``).
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from models.base import FeatureModel

from .config import FinetuneConfig
from .engine import ReducedResolution, reduced_size
from .runner import DatasetGetter, _targets, default_dataset_getter
from .splits import protocol_subsets

__all__ = ["protocol_indices", "train_subset", "test_subset", "protocol_input_size",
           "extraction_preprocess", "excluded", "TrainableFeatureModel", "protocol_feature_model",
           "protocol_extract"]

#: number of outputs of the placeholder head built to locate the head of a trainable network
_PLACEHOLDER_CLASSES = 97


def protocol_indices(dataset_name: str, config: FinetuneConfig, *,
                     dataset_getter: DatasetGetter = default_dataset_getter
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, val, test)`` indices of the protocol on ``dataset_name``
    (:func:`finetuning.splits.protocol_subsets`; train / val index the train split, test the test split)."""
    train_ds = dataset_getter(dataset_name, split="train")
    test_ds = dataset_getter(dataset_name, split="test")
    return protocol_subsets(_targets(train_ds, f"{dataset_name} (train split)"),
                            _targets(test_ds, f"{dataset_name} (test split)"), config, name=dataset_name)


def _subset(dataset_name: str, config: FinetuneConfig, split: str, dataset_getter: DatasetGetter):
    from torch.utils.data import Subset

    tr, _, te = protocol_indices(dataset_name, config, dataset_getter=dataset_getter)
    return Subset(dataset_getter(dataset_name, split=split), [int(i) for i in (tr if split == "train" else te)])


def train_subset(dataset_name: str, config: FinetuneConfig, *,
                 dataset_getter: DatasetGetter = default_dataset_getter):
    """The protocol's training images of ``dataset_name`` (a ``torch.utils.data.Subset`` of the
    train split, index order): the images fine-tuning trains on and the metrics must be scored on."""
    return _subset(dataset_name, config, "train", dataset_getter)


def test_subset(dataset_name: str, config: FinetuneConfig, *,
                dataset_getter: DatasetGetter = default_dataset_getter):
    """The protocol's test images of ``dataset_name`` (a ``Subset`` of the test split)."""
    return _subset(dataset_name, config, "test", dataset_getter)


test_subset.__test__ = False  # not a pytest test when imported into a test module


def protocol_input_size(native_hw: Sequence[int], config: FinetuneConfig) -> Tuple[int, int]:
    """Input ``(h, w)`` of a model with native input ``native_hw`` under ``config`` (module docstring)."""
    return reduced_size(int(native_hw[0]), int(native_hw[1]), config.resolution, config.size_multiple)


def _native_hw(preprocess: Callable) -> Tuple[int, int]:
    from PIL import Image

    x = preprocess(Image.new("RGB", (32, 32), (128, 128, 128)))
    return int(x.shape[1]), int(x.shape[2])


def extraction_preprocess(model_name: str, dataset_name: str, config: FinetuneConfig, *,
                          native: Optional[Callable] = None) -> ReducedResolution:
    """The protocol's image pipeline of ``model_name`` on ``dataset_name``: the model's own
    preprocessing (``native``; default: that of ``models.create_model(model_name)``) followed by the
    shrink to the protocol resolution. Fine-tuning applies the same object (``prepare_inputs``)."""
    if native is None:
        from models import create_model

        native = create_model(model_name, device="cpu").preprocess
    return ReducedResolution(native, config.resolution, config.size_multiple)


def excluded(model_name: str, dataset_name: str) -> bool:
    """True when ``model_name`` was pre-trained on ``dataset_name`` or its task domain (the
    registry entry's ``excluded_targets``): that cell of the table stays empty."""
    from models import model_info

    return dataset_name in tuple(getattr(model_info(model_name), "excluded_targets", ()) or ())


class TrainableFeatureModel(FeatureModel):
    """Features of ``models.create_trainable(name, K)`` before fine-tuning: the input of its new
    linear head (B x D), read with a forward pre-hook; no source head. Eval mode, CPU, no gradients.

    The head is found as the only ``nn.Linear`` with K outputs (K = a placeholder class count)."""

    def __init__(self, name: str, preprocess: Callable, input_hw: Tuple[int, int], *,
                 weights_dir=None, group: str = "offline"):
        from models import create_trainable

        network, _ = create_trainable(name, _PLACEHOLDER_CLASSES, weights_dir=weights_dir)
        heads = [m for m in network.modules() if isinstance(m, nn.Linear) and m.out_features == _PLACEHOLDER_CLASSES]
        if len(heads) != 1:
            raise ValueError(f"{name}: cannot locate the new head of its trainable network "
                             f"({len(heads)} linear layers with {_PLACEHOLDER_CLASSES} outputs)")
        super().__init__(name=name, group=group, feature_dim=heads[0].in_features, input_hw=input_hw,
                         device=torch.device("cpu"), num_source_classes=None, preprocess=preprocess)
        self.network = network.eval()
        self.network.requires_grad_(False)
        self._captured: list = []
        heads[0].register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple) -> None:
        self._captured.append(args[0])

    def _forward(self, x: torch.Tensor):
        self._captured.clear()
        self.network(x)
        if len(self._captured) != 1:
            raise RuntimeError(f"{self.name}: the head ran {len(self._captured)} times in one forward pass")
        return self._captured.pop().flatten(1), None


def protocol_feature_model(model_name: str, config: FinetuneConfig, *, weights_dir=None, device=None):
    """The feature extractor of ``model_name`` seeing the protocol's inputs (module docstring).

    The registered extractor (``models.create_model``) with ``preprocess`` replaced by
    :func:`extraction_preprocess` and ``input_hw`` by :func:`protocol_input_size`; when it rejects
    an input of that size, a :class:`TrainableFeatureModel` (same weights as fine-tuning's start).
    """
    from models import create_model, model_info

    model = create_model(model_name, weights_dir=weights_dir, device=device)
    pipeline = extraction_preprocess(model_name, "", config, native=model.preprocess)
    hw = protocol_input_size(_native_hw(model.preprocess), config)
    model.preprocess = pipeline
    if tuple(model.input_hw) == hw:
        return model
    model.input_hw, model.input_size = hw, max(hw)
    try:
        model.features_and_source_logits(torch.zeros(2, 3, *hw))
        return model
    except Exception as err:  # noqa: BLE001 - e.g. onnxruntime: an ONNX graph exported for one fixed size
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        del model
    warnings.warn(f"{model_name}: the registered extractor rejects {hw[0]}x{hw[1]} inputs ({reason}); "
                  "reading the features at the head input of its trainable network instead", RuntimeWarning,
                  stacklevel=2)
    return TrainableFeatureModel(model_name, pipeline, hw, weights_dir=weights_dir,
                                 group=model_info(model_name).group)


def protocol_extract(model_names: Sequence[str], dataset_names: Sequence[str], config: FinetuneConfig,
                     cache_dir: str | os.PathLike, *, split: str = "train", weights_dir=None, device=None,
                     batch_size: int = 64, progress: bool = True,
                     dataset_getter: DatasetGetter = default_dataset_getter,
                     log: Callable[[str], None] = print) -> list:
    """Features of the protocol's ``split`` images (``"train"``: :func:`train_subset`; ``"test"``:
    :func:`test_subset`) through :func:`protocol_feature_model`, into ``cache_dir`` (the layout and
    provenance records of ``models.pipeline.extract_to_cache``; use one directory per split:
    the cache is keyed by dataset name). Excluded (model, dataset) cells are not extracted."""
    from models.pipeline import extract_to_cache

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    pick = train_subset if split == "train" else test_subset
    results = []
    for m in model_names:
        targets = [d for d in dataset_names if not excluded(m, d)]
        if not targets:
            continue
        results += extract_to_cache([m], targets, cache_dir=cache_dir, batch_size=batch_size, progress=progress,
                                    dataset_factory=lambda d: pick(d, config, dataset_getter=dataset_getter),
                                    model_factory=lambda name: protocol_feature_model(
                                        name, config, weights_dir=weights_dir, device=device),
                                    log=log)
    return results
