"""Pyramid Vision Transformer v1 (Wang et al., ICCV 2021), tiny / small / medium.

timm ships only PVT v2, so v1 is implemented here. Parameter names follow the official release
(``whai362/PVT``, ``classification/pvt.py``: ``patch_embed{i}``, ``pos_embed{i}``, ``block{i}``,
``cls_token``, ``norm``, ``head``) so that its ``pvt_{tiny,small,medium}.pth`` checkpoints load with
``strict=True``.

Stage i (i = 1..4) embeds non-overlapping patches (4 x 4 for stage 1, 2 x 2 after), adds a learned
position embedding and runs transformer blocks with spatial-reduction attention: keys and values
come from the token map downsampled by a stride-``sr_ratio`` convolution. A CLS token is prepended
in the last stage; ``forward_features`` returns the final-normed CLS token (B x 512).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

__all__ = ["PVTConfig", "PVT_CONFIGS", "PyramidVisionTransformerV1", "create_pvt_v1"]


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys/values are computed on a ``sr_ratio``-times smaller map."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, sr_ratio: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads
        q = self.q(x).reshape(b, n, h, c // h).transpose(1, 2)
        kv_in = x
        if self.sr_ratio > 1:
            grid = x.transpose(1, 2).reshape(b, c, *hw)
            kv_in = self.norm(self.sr(grid).flatten(2).transpose(1, 2))
        k, v = self.kv(kv_in).reshape(b, -1, 2, h, c // h).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class PVTBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, sr_ratio, drop_path, norm_layer):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SpatialReductionAttention(dim, num_heads, qkv_bias, sr_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """B x C x H x W -> (B x (H/p * W/p) x D tokens, (H/p, W/p))."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


@dataclass(frozen=True)
class PVTConfig:
    depths: tuple[int, int, int, int]
    embed_dims: tuple[int, ...] = (64, 128, 320, 512)
    num_heads: tuple[int, ...] = (1, 2, 5, 8)
    mlp_ratios: tuple[int, ...] = (8, 8, 4, 4)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    patch_size: int = 4


PVT_CONFIGS = {
    "pvt_tiny": PVTConfig(depths=(2, 2, 2, 2)),
    "pvt_small": PVTConfig(depths=(3, 4, 6, 3)),
    "pvt_medium": PVTConfig(depths=(3, 4, 18, 3)),
}


class PyramidVisionTransformerV1(nn.Module):
    def __init__(self, cfg: PVTConfig, img_size: int = 224, num_classes: int = 1000,
                 drop_path_rate: float = 0.0):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        n_blocks = sum(cfg.depths)  # stochastic-depth rate grows linearly from 0 to drop_path_rate
        dpr = [drop_path_rate * j / max(n_blocks - 1, 1) for j in range(n_blocks)]
        self.num_stages = len(cfg.depths)
        cur = 0
        for i, depth in enumerate(cfg.depths):
            embed = PatchEmbed(img_size if i == 0 else img_size // 2 ** (i + 1),
                               cfg.patch_size if i == 0 else 2,
                               3 if i == 0 else cfg.embed_dims[i - 1], cfg.embed_dims[i])
            n_pos = embed.num_patches + (1 if i == self.num_stages - 1 else 0)
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"pos_embed{i + 1}", nn.Parameter(torch.zeros(1, n_pos, cfg.embed_dims[i])))
            setattr(self, f"block{i + 1}", nn.ModuleList(
                PVTBlock(cfg.embed_dims[i], cfg.num_heads[i], cfg.mlp_ratios[i], True, cfg.sr_ratios[i],
                         dpr[cur + j], norm_layer) for j in range(depth)))
            cur += depth
        self.num_features = cfg.embed_dims[-1]
        self.norm = norm_layer(self.num_features)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.num_features))
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        for i in range(self.num_stages):
            trunc_normal_(getattr(self, f"pos_embed{i + 1}"), std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @staticmethod
    def _resize_pos(pos: torch.Tensor, grid: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
        if tuple(hw) == tuple(grid):
            return pos
        pos = pos.reshape(1, *grid, -1).permute(0, 3, 1, 2)
        return F.interpolate(pos, size=hw, mode="bilinear").flatten(2).transpose(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        for i in range(self.num_stages):
            embed = getattr(self, f"patch_embed{i + 1}")
            pos = getattr(self, f"pos_embed{i + 1}")
            x, hw = embed(x)
            if i == self.num_stages - 1:
                x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
                pos = torch.cat([pos[:, :1], self._resize_pos(pos[:, 1:], embed.grid, hw)], dim=1)
            else:
                pos = self._resize_pos(pos, embed.grid, hw)
            x = x + pos
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x, hw)
            if i != self.num_stages - 1:
                x = x.reshape(b, *hw, -1).permute(0, 3, 1, 2).contiguous()
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def create_pvt_v1(name: str, num_classes: int = 1000) -> PyramidVisionTransformerV1:
    try:
        cfg = PVT_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown PVT v1 variant {name!r}; expected one of {sorted(PVT_CONFIGS)}") from None
    return PyramidVisionTransformerV1(cfg, num_classes=num_classes)
