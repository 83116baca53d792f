"""Decorator-based model registry and factory (in the style of timm / open_clip).

Each entry is registered once, by the module that knows how to build it::

    @register_model("resnet50", group="cnn", weights="resnet50-0676ba61.pth", trainable=...)
    def _build(weights_dir, device, pretrained) -> FeatureModel: ...

and is then built by name with :func:`create_model` / :func:`create_trainable`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from common import Registry

from .base import FeatureModel, Preprocess, resolve_device
from .weights import resolve_weights_dir

__all__ = ["GROUPS", "ModelEntry", "register_model", "list_models", "model_info", "create_model",
           "create_trainable", "target_allowed"]

GROUPS = ("cnn", "vit", "caption", "offline", "offline_trained")

FeatureBuilder = Callable[[Path | None, torch.device, bool], FeatureModel]
TrainableBuilder = Callable[[int, Path | None], "tuple[nn.Module, Preprocess]"]


@dataclass(frozen=True)
class ModelEntry:
    """One registry entry.

    ``weights`` documents where the real weights come from (a file/folder name inside the weights
    directory, or the registry package that ships them); ``trainable`` builds the fine-tuning
    network, or is ``None`` with ``not_trainable_reason`` saying why it cannot be built.
    ``source_datasets`` names the project datasets a network was pre-trained on here and
    ``excluded_targets`` the datasets it must never be evaluated on (its sources and their task
    domain, see :func:`target_allowed`); both are empty for externally pre-trained networks.
    """

    name: str
    group: str
    weights: str
    description: str
    build: FeatureBuilder
    trainable: TrainableBuilder | None
    not_trainable_reason: str = ""
    source_datasets: tuple[str, ...] = ()
    excluded_targets: tuple[str, ...] = ()


_REGISTRY: Registry[ModelEntry] = Registry("model")


def register_model(name: str, *, group: str, weights: str, description: str = "",
                   trainable: TrainableBuilder | None = None, not_trainable_reason: str = "",
                   source_datasets: tuple[str, ...] = (), excluded_targets: tuple[str, ...] = ()):
    """Decorator registering ``fn(weights_dir, device, pretrained) -> FeatureModel`` as ``name``."""
    if group not in GROUPS:
        raise ValueError(f"unknown model group {group!r}; expected one of {GROUPS}")
    if trainable is None and not not_trainable_reason:
        raise ValueError(f"{name}: give `trainable` or a `not_trainable_reason`")

    def decorator(fn: FeatureBuilder) -> FeatureBuilder:
        _REGISTRY.add(name, ModelEntry(name=name, group=group, weights=weights, description=description,
                                       build=fn, trainable=trainable, not_trainable_reason=not_trainable_reason,
                                       source_datasets=tuple(source_datasets),
                                       excluded_targets=tuple(excluded_targets)))
        return fn

    return decorator


def list_models(group: str | None = None) -> list[str]:
    """Registered model names (registration order), optionally of one group."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown model group {group!r}; expected one of {GROUPS}")
    return [n for n, e in _REGISTRY.items() if group is None or e.group == group]


def model_info(name: str) -> ModelEntry:
    """The registry entry of ``name`` (group, documented weights, trainability)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(_REGISTRY)}") from None


def target_allowed(name: str, dataset: str) -> bool:
    """False when model ``name`` was pre-trained here on ``dataset`` or on its task domain (the
    benchmark and fine-tuning tables leave that cell empty), True otherwise."""
    return dataset not in model_info(name).excluded_targets


def create_model(name: str, *, weights_dir: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, pretrained: bool = True) -> FeatureModel:
    """Build the feature extractor ``name`` in eval mode on ``device`` (CUDA if available).

    ``pretrained=False`` builds the same architecture with random weights (no files needed).
    Missing local weights raise :class:`FileNotFoundError` naming the expected path.
    """
    entry = model_info(name)
    return entry.build(resolve_weights_dir(weights_dir), resolve_device(device), bool(pretrained))


def create_trainable(name: str, num_classes: int, *, weights_dir: str | os.PathLike | None = None
                     ) -> tuple[nn.Module, Preprocess]:
    """Pre-trained backbone of ``name`` + a NEW ``num_classes``-way linear head, all trainable.

    Returns ``(module, preprocess)``; ``module`` maps B x 3 x H x W -> B x num_classes logits, is in
    train mode on the CPU, and every parameter has ``requires_grad=True``.
    """
    entry = model_info(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if entry.trainable is None:
        raise NotImplementedError(f"model {name!r} cannot be made trainable: {entry.not_trainable_reason}")
    module, preprocess = entry.trainable(num_classes, resolve_weights_dir(weights_dir))
    module.train()
    module.requires_grad_(True)
    return module, preprocess
