"""The one split node behind ``SO3vec.parts`` (private).

``split_packed(packed, sizes)`` is ``torch.split(packed, sizes, -1)``: views, no copy. When the packed
tensor requires gradients it is one autograd node whose backward writes the packed gradient once:
the parts' gradients (``None`` for parts the loss did not use: zeros) are copied into one fresh
tensor, which for large CPU gradients is advised onto huge pages (:func:`so3net.kernels.memory.empty`;
``torch.split``'s own backward concatenates into memory that costs a page fault every 4 KiB, about
twice the time on the development machine). The backward is made of differentiable torch ops, so
gradients of any order flow through it.
"""
from __future__ import annotations

import torch

from ..kernels import memory

__all__ = ["split_packed"]


class _SplitParts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, packed: torch.Tensor, sizes: tuple[int, ...]):
        ctx.set_materialize_grads(False)
        ctx.meta = (packed.shape, packed.dtype, packed.device, sizes)
        return tuple(packed.split(sizes, -1))

    @staticmethod
    def backward(ctx, *grads):
        shape, dtype, device, sizes = ctx.meta
        out = memory.empty(*shape, dtype=dtype, device=device)
        start = 0
        for g, size in zip(grads, sizes):
            piece = out[..., start:start + size]
            piece.zero_() if g is None else piece.copy_(g)
            start += size
        return out, None


def split_packed(packed: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """``torch.split(packed, sizes, -1)``, with the backward above when gradients are recorded."""
    if packed.requires_grad and torch.is_grad_enabled():
        return _SplitParts.apply(packed, tuple(sizes))
    return packed.split(sizes, -1)
