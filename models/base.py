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
import functools
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from PIL import Image
from torch import nn

__all__ = ["FeatureModel", "HookedFeatureModel", "MultiOutputFeatureModel", "MultiHookedFeatureModel", "Tap",
           "Preprocess", "resolve_device", "pool_identity", "pool_cls_token", "pool_token_mean",
           "pool_spatial_mean", "pool_map_mean"]

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


def pool_map_mean(t: torch.Tensor) -> torch.Tensor:
    """B x C x H x W convolutional map -> B x C: global average over the H x W positions."""
    return t.mean(dim=(2, 3))


def check_batch(name: str, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Validate a B x 3 x H x W batch (clear one-line errors) and move it to ``device`` as float32."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor batch, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected a B x 3 x H x W batch, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: empty batch")
    return x.to(device, dtype=torch.float32)


def _check_output(name: str, feats: torch.Tensor, feature_dim: int) -> torch.Tensor:
    if feats.ndim != 2 or feats.shape[1] != feature_dim:
        raise RuntimeError(f"{name}: produced features of shape {tuple(feats.shape)}, expected B x {feature_dim}")
    return feats.float()


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
        return check_batch(self.name, x, self.device)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W -> B x D features (no gradient)."""
        return self.features_and_source_logits(x)[0]

    @torch.no_grad()
    def features_and_source_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """B x 3 x H x W -> (B x D features, B x Cs source logits or ``None``), no gradient."""
        feats, logits = self._forward(self._check_batch(x))
        return _check_output(self.name, feats, self.feature_dim), (None if logits is None else logits.float())

    @abc.abstractmethod
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated batch on ``self.device`` -> (features, source logits or None)."""


@dataclass(frozen=True)
class Tap:
    """Where a torch network's feature is read: the INPUT (``output=False``) or the OUTPUT of
    ``layer``, reduced to one B x ``feature_dim`` vector per image by ``pool``."""

    layer: nn.Module
    pool: Callable[[torch.Tensor], torch.Tensor]
    feature_dim: int
    output: bool = False


class _StopForward(Exception):
    """Raised by the last tap's hook when the rest of the forward pass is not needed."""


class _TappedNetwork:
    """One forward pass of ``network`` capturing every tap once; the pass stops at the last tap
    when the network output (source logits) is not needed.

    ``channels_last``: weights and inputs in the NHWC memory format (faster CPU convolutions for
    CNNs; the same arithmetic up to summation order)."""

    def __init__(self, network: nn.Module, taps: Mapping[str, Tap], need_output: bool, device: torch.device,
                 channels_last: bool):
        if not taps:
            raise ValueError("give at least one tap")
        self.network = network.to(device).eval()
        self.network.requires_grad_(False)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last)
        self.taps = dict(taps)
        self.need_output = bool(need_output)
        self._captured: dict[str, list[torch.Tensor]] = {k: [] for k in self.taps}
        self.handles = []
        for key, tap in self.taps.items():
            if tap.output:
                hook = functools.partial(self._capture_output, key)
                self.handles.append(tap.layer.register_forward_hook(hook))
            else:
                hook = functools.partial(self._capture_input, key)
                self.handles.append(tap.layer.register_forward_pre_hook(hook))

    def _store(self, key: str, t: torch.Tensor) -> None:
        self._captured[key].append(t)
        if not self.need_output and all(self._captured.values()):
            raise _StopForward

    def _capture_input(self, key: str, module: nn.Module, args: tuple) -> None:
        self._store(key, args[0])

    def _capture_output(self, key: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self._store(key, output)

    def run(self, x: torch.Tensor, name: str) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """x -> ({tap: pooled B x D features}, network output or None)."""
        for lst in self._captured.values():
            lst.clear()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = None
        try:
            out = self.network(x)
        except _StopForward:
            pass
        feats = {}
        for key, lst in self._captured.items():
            if len(lst) != 1:
                raise RuntimeError(f"{name}: the feature layer of {key} ran {len(lst)} times in one forward "
                                   "pass (expected once)")
            feats[key] = self.taps[key].pool(lst.pop())
        return feats, (out if self.need_output else None)


class HookedFeatureModel(FeatureModel):
    """A torch network whose feature is the INPUT of one of its layers (``feature_layer``), or its
    OUTPUT with ``feature_output=True`` (an intermediate candidate: the pass then stops there).

    This is exactly how the EMMS reference code reads features (a forward hook on the final
    classifier of a CNN, or on the final norm of a transformer): the network runs its ordinary
    forward pass, which also yields the source logits; the hook keeps the layer input ``h``
    and ``pool(h)`` gives the B x D feature.
    """

    def __init__(self, *, network: nn.Module, feature_layer: nn.Module,
                 pool: Callable[[torch.Tensor], torch.Tensor], returns_logits: bool,
                 name: str, group: str, feature_dim: int, input_hw: tuple[int, int],
                 device: torch.device, num_source_classes: int | None, preprocess: Preprocess,
                 feature_output: bool = False, channels_last: bool = False):
        super().__init__(name=name, group=group, feature_dim=feature_dim, input_hw=input_hw,
                         device=device, num_source_classes=num_source_classes, preprocess=preprocess)
        if returns_logits != (num_source_classes is not None):
            raise ValueError(f"{name}: returns_logits={returns_logits} contradicts "
                             f"num_source_classes={num_source_classes}")
        tap = Tap(feature_layer, pool, self.feature_dim, output=feature_output)
        self._tapped = _TappedNetwork(network, {name: tap}, returns_logits, device, channels_last)
        self.network = self._tapped.network

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats, out = self._tapped.run(x, self.name)
        return feats[self.name], out


class MultiOutputFeatureModel(abc.ABC):
    """One network serving several registered candidates in ONE forward pass (e.g. a network's final
    feature and its intermediate-layer candidates).

    ``outputs`` maps each candidate name to ``(feature_dim, num_source_classes or None)``;
    :meth:`features_and_source_logits_multi` returns ``{name: (B x D_name features, logits or None)}``,
    each equal to what ``models.create_model(name)`` computes on the same batch.
    """

    name: str
    names: tuple[str, ...]
    input_hw: tuple[int, int]
    input_size: int
    device: torch.device
    preprocess: Preprocess
    needs_captions = False

    def __init__(self, *, name: str, outputs: Mapping[str, tuple[int, int | None]], input_hw: tuple[int, int],
                 device: torch.device, preprocess: Preprocess):
        if not outputs:
            raise ValueError(f"{name}: a multi-output model needs at least one output")
        self.name = name
        self.outputs = {k: (int(d), c) for k, (d, c) in outputs.items()}
        self.names = tuple(self.outputs)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.input_size = max(self.input_hw)
        self.device = device
        self.preprocess = preprocess

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, outputs={list(self.names)}, device={self.device})"

    @torch.no_grad()
    def features_and_source_logits_multi(self, x: torch.Tensor
                                         ) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """B x 3 x H x W -> {candidate: (B x D features, B x Cs logits or None)}, no gradient."""
        out = self._forward_multi(check_batch(self.name, x, self.device))
        if set(out) != set(self.names):
            raise RuntimeError(f"{self.name}: produced outputs {sorted(out)}, expected {sorted(self.names)}")
        result = {}
        for key in self.names:
            feats, logits = out[key]
            if (logits is None) != (self.outputs[key][1] is None):
                raise RuntimeError(f"{self.name}: source logits of {key} do not match its num_source_classes")
            result[key] = (_check_output(key, feats, self.outputs[key][0]),
                           None if logits is None else logits.float())
        return result

    @abc.abstractmethod
    def _forward_multi(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Validated batch on ``self.device`` -> {candidate: (features, source logits or None)}."""


class MultiHookedFeatureModel(MultiOutputFeatureModel):
    """Several :class:`Tap` s of one torch network read in one forward pass; the candidates named in
    ``with_logits`` also return the network output (their source head), so the pass runs to the
    end only when one of them is requested."""

    def __init__(self, *, network: nn.Module, taps: Mapping[str, Tap], with_logits: Sequence[str],
                 num_source_classes: int | None, name: str, input_hw: tuple[int, int], device: torch.device,
                 preprocess: Preprocess, channels_last: bool = False):
        unknown = set(with_logits) - set(taps)
        if unknown:
            raise ValueError(f"{name}: with_logits names {sorted(unknown)} that are not taps")
        if with_logits and num_source_classes is None:
            raise ValueError(f"{name}: with_logits needs num_source_classes")
        self._with_logits = frozenset(with_logits)
        super().__init__(name=name, device=device, input_hw=input_hw, preprocess=preprocess,
                         outputs={k: (t.feature_dim, num_source_classes if k in self._with_logits else None)
                                  for k, t in taps.items()})
        self._tapped = _TappedNetwork(network, taps, bool(self._with_logits), device, channels_last)
        self.network = self._tapped.network

    def _forward_multi(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        feats, out = self._tapped.run(x, self.name)
        return {k: (f, out if k in self._with_logits else None) for k, f in feats.items()}
