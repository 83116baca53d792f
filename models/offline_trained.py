"""Small networks pre-trained HERE on offline source datasets, with committed weights.

Each network is ``body`` (B x 3 x H x W -> B x D, the feature) followed by a linear source ``head``
(D -> Cs). The weights (fp32 state dicts) and their provenance live in ``models/weights_offline/``;
they are made by ``scripts/pretrain_offline.py`` (library: :mod:`finetuning.pretrain`) and one
registry entry (group ``"offline_trained"``) is made per network of ``PROVENANCE.json``.

Feature: the input of ``head`` (B x D); source head: the Cs classes of the source dataset(s)
(a mixture concatenates the class lists, see :func:`source_label_offsets`), so LEEP / NCE apply.
Input: RGB resized (no crop) to the network's ``input_size``, ``(x - 0.5) / 0.5`` on 0..1 values.

Disjointness rule: a network may only be used on targets outside the task DOMAIN of its sources
(:data:`DOMAINS`: MNIST and the sklearn digits are both handwritten digits; the two easy-VQA label
sets are labels of the same scenes). :func:`excluded_targets` lists them; the registry entry carries
them (``models.target_allowed(name, dataset)``).
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from common import Registry
from data.fingerprint import file_sha256

from .base import FeatureModel, HookedFeatureModel, Preprocess, pool_identity
from .registry import register_model
from .transforms import stretch_transform

__all__ = ["WEIGHTS_DIR", "PROVENANCE_FILE", "DOMAINS", "MEAN", "STD", "ARCHITECTURES", "SmallNet",
           "build_network", "excluded_targets", "source_label_offsets", "preprocess_for",
           "load_provenance", "load_network"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights_offline"
PROVENANCE_FILE = "PROVENANCE.json"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)

#: dataset -> task domain; datasets of one domain count as the same task for the disjointness rule
DOMAINS: Mapping[str, str] = {
    "fashion_mnist": "clothing", "mnist": "handwritten_digits", "digits": "handwritten_digits",
    "textures": "textures", "lfw_faces": "faces",
    "easyvqa_shapes": "easyvqa_scenes", "easyvqa_colors": "easyvqa_scenes",
}


def excluded_targets(sources: Sequence[str]) -> tuple[str, ...]:
    """Sorted datasets a network pre-trained on ``sources`` must not be used on: every dataset of
    the domain of any source (unknown datasets form their own domain)."""
    domains = {DOMAINS.get(s, s) for s in sources}
    return tuple(sorted({d for d, dom in DOMAINS.items() if dom in domains} | set(sources)))


def source_label_offsets(class_counts: Sequence[int]) -> list[int]:
    """Label offset of each source in a mixture: source k's class c is head output
    ``offsets[k] + c`` with ``offsets[k] = sum_{j<k} class_counts[j]``."""
    offsets, total = [], 0
    for c in class_counts:
        offsets.append(total)
        total += int(c)
    return offsets


# --------------------------------------------------------------------------------------------------
# architectures: (input_size, **arch_kwargs) -> body with attribute ``out_dim``
# --------------------------------------------------------------------------------------------------
ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("offline architecture")


def _conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    """ResNet basic block: relu(bn(conv(relu(bn(conv x)))) + shortcut x)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = _conv_bn(cout, cout, act=False)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


@ARCHITECTURES.register("resnet")
def _resnet(input_size: int, width: int = 16) -> nn.Module:
    """ResNet-8 style: 3x3 stem, three stages of one basic block (width, 2w, 4w; strides 1, 2, 2),
    global average pool -> D = 4w."""
    w = width
    body = nn.Sequential(_conv_bn(3, w), _BasicBlock(w, w, 1), _BasicBlock(w, 2 * w, 2),
                         _BasicBlock(2 * w, 4 * w, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    body.out_dim = 4 * w
    return body


@ARCHITECTURES.register("vgg")
def _vgg(input_size: int, width: int = 16) -> nn.Module:
    """VGG style: three stages of two 3x3 conv-BN-ReLU (width, 2w, 4w) each followed by 2x2 max
    pooling, global average pool -> D = 4w."""
    layers, cin = [], 3
    for c in (width, 2 * width, 4 * width):
        layers += [_conv_bn(cin, c), _conv_bn(c, c), nn.MaxPool2d(2)]
        cin = c
    body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    body.out_dim = cin
    return body


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (x t) -> 3x3 depthwise (stride) -> 1x1 project, residual if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4):
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


@ARCHITECTURES.register("mobilenet")
def _mobilenet(input_size: int, width: int = 16) -> nn.Module:
    """MobileNetV2 style: 3x3 stem (w), inverted residuals w -> w (s1), 2w (s2), 2w, 4w (s2), 4w,
    1x1 conv to 8w, global average pool -> D = 8w."""
    w = width
    body = nn.Sequential(_conv_bn(3, w), _InvertedResidual(w, w, 1), _InvertedResidual(w, 2 * w, 2),
                         _InvertedResidual(2 * w, 2 * w, 1), _InvertedResidual(2 * w, 4 * w, 2),
                         _InvertedResidual(4 * w, 4 * w, 1),
                         nn.Conv2d(4 * w, 8 * w, 1, bias=False), nn.BatchNorm2d(8 * w), nn.ReLU6(inplace=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())
    body.out_dim = 8 * w
    return body


class _MixerBlock(nn.Module):
    """MLP-Mixer block (Tolstikhin et al. 2021): x + TokenMLP(LN(x))^T, then x + ChannelMLP(LN(x))."""

    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, tokens), nn.GELU(), nn.Linear(tokens, tokens))
        self.channel_mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):                                   # B x N x D
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class _Mixer(nn.Module):
    """Patch embedding (patch x patch, stride patch) -> ``depth`` mixer blocks -> LN -> token mean (D = width)."""

    def __init__(self, width: int, depth: int, patch: int, input_size: int):
        super().__init__()
        if input_size % patch:
            raise ValueError(f"mixer: input_size {input_size} is not a multiple of patch {patch}")
        tokens = (input_size // patch) ** 2
        self.embed = nn.Conv2d(3, width, patch, patch)
        self.blocks = nn.Sequential(*[_MixerBlock(tokens, width) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.out_dim = width

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)        # B x N x D
        return self.norm(self.blocks(t)).mean(dim=1)


@ARCHITECTURES.register("mixer")
def _mixer(input_size: int, width: int = 64, depth: int = 4, patch: int = 4) -> nn.Module:
    return _Mixer(width, depth, patch, input_size)


@ARCHITECTURES.register("mlp")
def _mlp(input_size: int, width: int = 256) -> nn.Module:
    """Flatten -> Linear(3 s^2, width) -> ReLU -> Linear(width, width/2) -> ReLU (D = width/2)."""
    body = nn.Sequential(nn.Flatten(), nn.Linear(3 * input_size * input_size, width), nn.ReLU(inplace=True),
                         nn.Linear(width, width // 2), nn.ReLU(inplace=True))
    body.out_dim = width // 2
    return body


class SmallNet(nn.Module):
    """``head(body(x))``: B x 3 x H x W -> B x Cs logits; ``body(x)`` is the B x D feature."""

    def __init__(self, body: nn.Module, num_classes: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(body.out_dim, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def build_network(arch: str, arch_kwargs: Mapping, num_classes: int, input_size: int) -> SmallNet:
    """Randomly initialised :class:`SmallNet` of architecture ``arch`` (a name of :data:`ARCHITECTURES`)
    for ``input_size`` x ``input_size`` inputs."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown offline architecture {arch!r}; available: {', '.join(sorted(ARCHITECTURES))}")
    return SmallNet(ARCHITECTURES[arch](int(input_size), **dict(arch_kwargs)), int(num_classes))


def preprocess_for(input_size: int) -> Preprocess:
    """RGB PIL -> 3 x s x s tensor: resize (bilinear, no crop), ``(x - 0.5) / 0.5``."""
    return stretch_transform(int(input_size), int(input_size), mean=MEAN, std=STD)


# --------------------------------------------------------------------------------------------------
# provenance + loading
# --------------------------------------------------------------------------------------------------
def load_provenance(weights_dir: Path | None = None) -> dict:
    """``{name: record}`` of ``PROVENANCE.json`` in ``weights_dir`` (default :data:`WEIGHTS_DIR`);
    ``{}`` when the file does not exist yet."""
    path = Path(weights_dir or WEIGHTS_DIR) / PROVENANCE_FILE
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["networks"]


def load_network(record: Mapping, weights_dir: Path | None = None, pretrained: bool = True) -> SmallNet:
    """The network of one provenance ``record``; its weight file must exist and match the recorded sha256."""
    if not pretrained:
        return build_network(record["architecture"], record["arch_kwargs"], record["num_source_classes"],
                             record["input_size"])
    with torch.random.fork_rng(devices=[]):     # the initial values are overwritten: leave the global RNG alone
        net = build_network(record["architecture"], record["arch_kwargs"], record["num_source_classes"],
                            record["input_size"])
    path = Path(weights_dir or WEIGHTS_DIR) / record["weights_file"]
    if not path.is_file():
        raise FileNotFoundError(f"{record['name']}: missing weight file {path}; re-create it with "
                                f"`python scripts/pretrain_offline.py --networks {record['name']}`")
    digest = file_sha256(path)
    if digest != record["sha256"]:
        raise ValueError(f"{record['name']}: {path} has sha256 {digest[:12]}..., the provenance records "
                         f"{record['sha256'][:12]}... (corrupt or re-trained file; re-run scripts/pretrain_offline.py)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return net


def _build(record: Mapping, weights_dir, device: torch.device, pretrained: bool) -> FeatureModel:
    # weights_dir (the external weights folder) is not read: these weights are committed in the package
    net = load_network(record, pretrained=pretrained)
    size = int(record["input_size"])
    return HookedFeatureModel(network=net, feature_layer=net.head, pool=pool_identity, returns_logits=True,
                              name=record["name"], group="offline_trained", feature_dim=net.body.out_dim,
                              input_hw=(size, size), device=device,
                              num_source_classes=int(record["num_source_classes"]),
                              preprocess=preprocess_for(size))


def _build_trainable(record: Mapping, num_classes: int, weights_dir) -> tuple[nn.Module, Preprocess]:
    net = load_network(record)
    net.head = nn.Linear(net.body.out_dim, num_classes)
    return net, preprocess_for(int(record["input_size"]))


def _register_all() -> None:
    for name, rec in load_provenance().items():
        srcs = ", ".join(f"{s['dataset']} ({s['n_images']})" for s in rec["sources"])
        register_model(name, group="offline_trained", weights=f"models/weights_offline/{rec['weights_file']}",
                       description=(f"{rec['architecture']} {rec['input_size']}px pre-trained here on {srcs}, "
                                    f"{rec['epochs']} epochs; source test acc {rec['val_accuracy']:.1f}%"),
                       trainable=partial(_build_trainable, rec),
                       source_datasets=tuple(s["dataset"] for s in rec["sources"]),
                       excluded_targets=tuple(rec["excluded_targets"]))(partial(_build, rec))


_register_all()
