"""The common interface of every feature extractor in the registry.

A :class:`FeatureModel` maps a batch of preprocessed images ``x`` (B x 3 x H x W) to

* ``features``: B x D penultimate representation phi(x) (the input of the model's last
  classifier / normalisation layer, as in the EMMS reference code, Meng et al., NeurIPS 2023), and
* ``source logits``: B x Cs scores of the model's own source-task head (ImageNet-1k for the
  supervised classifiers), or ``None`` when the model has no such head.

Subclasses implement :meth:`FeatureModel._forward`; the public methods validate the input, run
without gradients and return tensors on ``self.device``.
"""
from __future__ import annotations

import abc
from typing import Callable

import torch
from PIL import Image
from torch import nn

__all__ = ["FeatureModel", "HookedFeatureModel", "Preprocess", "resolve_device",
           "pool_identity", "pool_cls_token", "pool_token_mean", "pool_spatial_mean"]

Preprocess = Callable[[Image.Image], torch.Tensor]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, CPU otherwise; strings are parsed by :class:`torch.device`."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# -- pooling of a captured layer input into one vector per image ---------------------------------
def pool_identity(t: torch.Tensor) -> torch.Tensor:
    """B x D -> B x D (the captured tensor already is one vector per image)."""
    return t.flatten(1)


def pool_cls_token(t: torch.Tensor) -> torch.Tensor:
    """B x N x D tokens -> B x D: token 0 (the CLS token)."""
    return t[:, 0]


def pool_token_mean(t: torch.Tensor) -> torch.Tensor:
    """B x N x D tokens -> B x D: mean over the N tokens."""
    return t.mean(dim=1)


def pool_spatial_mean(t: torch.Tensor) -> torch.Tensor:
    """B x ... x D channels-last map (e.g. Swin's B x H x W x C) -> B x D: mean over all positions."""
    return t.reshape(t.shape[0], -1, t.shape[-1]).mean(dim=1)


class FeatureModel(abc.ABC):
    """A pre-trained network seen as a feature extractor (plus its source head, if any).

    Attributes
    ----------
    name, group : registry name and group (``"cnn"``, ``"vit"``, ``"caption"``, ``"offline"``).
    feature_dim : D, the length of one feature vector.
    input_size : side of the (square) network input in pixels; for non-square inputs the longer
        side, with the exact ``(H, W)`` in :attr:`input_hw`.
    device : where the computation runs.
    num_source_classes : Cs, the number of source-head outputs, or ``None`` without a head.
    preprocess : RGB PIL image -> 3 x H x W float tensor, the model's own test-time transform.
    """

    name: str
    group: str
    feature_dim: int
    input_size: int
    input_hw: tuple[int, int]
    device: torch.device
    num_source_classes: int | None
    preprocess: Preprocess

    def __init__(self, *, name: str, group: str, feature_dim: int, input_hw: tuple[int, int],
                 device: torch.device, num_source_classes: int | None, preprocess: Preprocess):
        self.name = name
        self.group = group
        self.feature_dim = int(feature_dim)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.input_size = max(self.input_hw)
        self.device = device
        self.num_source_classes = num_source_classes
        self.preprocess = preprocess

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, group={self.group!r}, "
                f"feature_dim={self.feature_dim}, input_hw={self.input_hw}, device={self.device}, "
                f"num_source_classes={self.num_source_classes})")

    def _check_batch(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{self.name}: expected a torch.Tensor batch, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected a B x 3 x H x W batch, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{self.name}: empty batch")
        return x.to(self.device, dtype=torch.float32)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W -> B x D features (no gradient)."""
        return self.features_and_source_logits(x)[0]

    @torch.no_grad()
    def features_and_source_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """B x 3 x H x W -> (B x D features, B x Cs source logits or ``None``), no gradient."""
        feats, logits = self._forward(self._check_batch(x))
        if feats.ndim != 2 or feats.shape[1] != self.feature_dim:
            raise RuntimeError(f"{self.name}: produced features of shape {tuple(feats.shape)}, "
                               f"expected B x {self.feature_dim}")
        return feats.float(), (None if logits is None else logits.float())

    @abc.abstractmethod
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated batch on ``self.device`` -> (features, source logits or None)."""


class HookedFeatureModel(FeatureModel):
    """A torch network whose feature is the INPUT of one of its layers (``feature_layer``).

    This is exactly how the EMMS reference code reads features (a forward hook on the final
    classifier of a CNN, or on the final norm of a transformer): the network runs its ordinary
    forward pass, which also yields the source logits; the hook keeps the layer input ``h``
    and ``pool(h)`` gives the B x D feature.
    """

    def __init__(self, *, network: nn.Module, feature_layer: nn.Module,
                 pool: Callable[[torch.Tensor], torch.Tensor], returns_logits: bool,
                 name: str, group: str, feature_dim: int, input_hw: tuple[int, int],
                 device: torch.device, num_source_classes: int | None, preprocess: Preprocess):
        super().__init__(name=name, group=group, feature_dim=feature_dim, input_hw=input_hw,
                         device=device, num_source_classes=num_source_classes, preprocess=preprocess)
        if returns_logits != (num_source_classes is not None):
            raise ValueError(f"{name}: returns_logits={returns_logits} contradicts "
                             f"num_source_classes={num_source_classes}")
        self.network = network.to(device).eval()
        self.network.requires_grad_(False)
        self._pool = pool
        self._returns_logits = returns_logits
        self._captured: list[torch.Tensor] = []
        feature_layer.register_forward_pre_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple) -> None:
        self._captured.append(args[0])

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self._captured.clear()
        out = self.network(x)
        if len(self._captured) != 1:
            raise RuntimeError(f"{self.name}: the feature layer ran {len(self._captured)} times "
                               "in one forward pass (expected once)")
        feats = self._pool(self._captured.pop())
        return feats, (out if self._returns_logits else None)
