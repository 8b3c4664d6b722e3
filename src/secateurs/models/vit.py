"""A small Vision Transformer (Dosovitskiy et al. 2021) for 28x28 / 32x32 inputs, written the way timm writes it.

Patch embedding (a strided conv), class token, learned position embedding, pre-norm blocks of multi-head
self-attention and an MLP, final LayerNorm, linear head on the class token. The attention is plain Linears (one
``qkv`` projection viewed as (3, heads, head_dim), ``proj`` back), so the net stays ``torch.fx``-traceable (the
zoo rule) and its heads are prunable groups (``secateurs.graph``): removing a head removes its q/k/v rows and
``proj`` columns and lowers ``num_heads``; ``attn_dim`` follows.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import hw
from ._factory import register_model


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({num_heads})")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.attn_dim = num_heads * self.head_dim  # heads * head_dim: lowered when heads are pruned
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * self.attn_dim)
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.attn_dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, image: tuple[int, int], patch: int, dim: int, depth: int,
                 heads: int, mlp: int):
        super().__init__()
        if image[0] % patch or image[1] % patch:
            raise ValueError(f"input_size {image} must be divisible by patch ({patch})")
        self.tokens = (image[0] // patch) * (image[1] // patch) + 1
        self.patch = nn.Conv2d(in_channels, dim, patch, patch)
        # class token and positions as embeddings (modules, not bare parameters: the zoo's weights-in-modules rule)
        self.cls, self.pos = nn.Embedding(1, dim), nn.Embedding(self.tokens, dim)
        nn.init.zeros_(self.cls.weight)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        cls = self.cls(torch.zeros_like(x[:, :1, 0], dtype=torch.long))  # (batch, 1) indices of the one token
        x = torch.cat([cls, x], 1) + self.pos(torch.arange(self.tokens, device=x.device))
        return self.head(self.norm(self.blocks(x))[:, 0])


@register_model("vit_tiny")
def vit_tiny(*, num_classes: int = 10, in_channels: int = 3, input_size=None, patch: int = 4, dim: int = 64,
             depth: int = 4, heads: int = 4, mlp: int = 128) -> nn.Module:
    """ViT with 4x4 patches, width 64, 4 blocks of 4 heads (head_dim 16) and MLP 128 (~0.2 M params at 32x32)."""
    return ViT(in_channels, num_classes, hw(input_size, default=32), patch, dim, depth, heads, mlp)
