"""Test-time image transforms (RGB PIL image -> 3 x H x W float tensor)."""
from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from torchvision import transforms as T

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "center_crop_transform", "stretch_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


class _ToRGB:
    """Convert any PIL mode (L, RGBA, P, ...) to RGB; picklable for DataLoader workers."""

    def __call__(self, img: Image.Image) -> Image.Image:
        if not isinstance(img, Image.Image):
            raise ValueError(f"preprocess expects a PIL image, got {type(img).__name__}")
        return img if img.mode == "RGB" else img.convert("RGB")


class _RGBToBGR:
    """Reverse the channel order of a 3 x H x W tensor (for networks trained on OpenCV BGR input)."""

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return t.flip(0)


def _interp(name: str) -> T.InterpolationMode:
    try:
        return _INTERPOLATIONS[name]
    except KeyError:
        raise ValueError(f"unknown interpolation {name!r}; expected one of {sorted(_INTERPOLATIONS)}") from None


def center_crop_transform(size: int, *, crop_pct: float = 0.875, mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD, interpolation: str = "bilinear") -> T.Compose:
    """Resize the short side to ``size / crop_pct``, centre-crop ``size`` x ``size``, normalise."""
    if size < 1 or not 0 < crop_pct <= 1:
        raise ValueError(f"bad transform parameters size={size}, crop_pct={crop_pct}")
    return T.Compose([_ToRGB(), T.Resize(int(round(size / crop_pct)), interpolation=_interp(interpolation)),
                      T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])


def stretch_transform(height: int, width: int, *, mean: Sequence[float], std: Sequence[float],
                      interpolation: str = "bilinear", bgr: bool = False) -> T.Compose:
    """Resize to exactly ``height`` x ``width`` (no crop: text lines keep all characters), normalise,
    optionally reverse to BGR channel order."""
    steps = [_ToRGB(), T.Resize((height, width), interpolation=_interp(interpolation)), T.ToTensor(),
             T.Normalize(mean, std)]
    if bgr:
        steps.append(_RGBToBGR())
    return T.Compose(steps)
