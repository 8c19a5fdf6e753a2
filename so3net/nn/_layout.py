"""Packed SO(3)-vector layout shared by the layers (the layout of :mod:`so3net.plan`).

A vector of type ``tau`` (fragment counts per l) over ``B`` rows is a tensor ``(B, dim)`` where part
``l`` occupies columns ``[offset(l), offset(l) + (2l+1) * tau[l])`` stored row-major as the SO3part
``(2l+1, tau[l])`` (index ``m + l`` first, fragments last). Zero counts mean absent parts.

Inside the Cormorant layers, where every part has the same C fragments ("channels"), atom features
use the *mcn* layout ``(D, C, N)``: row ``l² + m + l`` (D = (lmax+1)² rows), channel, atom. Its
rows for one l are a contiguous ``(2l+1, C, N)`` block, the outer product of two such tensors is
already in the (row pair, channel, atom) order that the CG contraction wants, and mixing the
fragments of part l is one matmul ``W_lᵀ (C', n) @ (2l+1, n, N)``.
"""
from __future__ import annotations

import torch

from ..plan import packed_offsets

__all__ = ["check_tau", "tau_dim", "split_parts", "join_parts", "uniform_tau", "packed_to_mcn", "mcn_to_packed",
           "mcn_parts"]


def check_tau(tau) -> tuple[int, ...]:
    """``tau`` as a tuple of non-negative ints (raises with the offending value otherwise)."""
    tau = tuple(int(n) for n in tau)
    if not tau or any(n < 0 for n in tau):
        raise ValueError(f"tau must be a non-empty tuple of fragment counts >= 0, got {tau}")
    return tau


def tau_dim(tau) -> int:
    """Width of the packed layout of type ``tau``: sum over l of (2l+1) * tau[l]."""
    return packed_offsets(tuple(tau))[1]


def uniform_tau(n: int, lmax: int) -> tuple[int, ...]:
    """The type with ``n`` fragments for every l = 0..lmax."""
    return (int(n),) * (int(lmax) + 1)


def split_parts(x: torch.Tensor, tau) -> dict[int, torch.Tensor]:
    """Packed ``(B, dim)`` -> dict ``l -> (B, 2l+1, tau[l])`` views (absent parts omitted)."""
    offsets, dim = packed_offsets(tuple(tau))
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"packed vector of type {tuple(tau)} must have shape (B, {dim}), got {tuple(x.shape)}")
    return {l: x[:, o:o + (2 * l + 1) * n].reshape(x.shape[0], 2 * l + 1, n)
            for l, (o, n) in enumerate(zip(offsets, tau)) if n > 0}


def join_parts(parts: dict[int, torch.Tensor]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """dict ``l -> (B, 2l+1, n_l)`` -> (packed ``(B, dim)``, tau). Missing l below the top get 0."""
    if not parts:
        raise ValueError("join_parts needs at least one part")
    lmax = max(parts)
    tau = tuple(parts[l].shape[2] if l in parts else 0 for l in range(lmax + 1))
    for l, p in parts.items():
        if p.dim() != 3 or p.shape[1] != 2 * l + 1:
            raise ValueError(f"part {l} must have shape (B, {2 * l + 1}, n), got {tuple(p.shape)}")
    B = next(iter(parts.values())).shape[0]
    flat = [parts[l].reshape(B, parts[l].shape[1] * parts[l].shape[2]) for l in range(lmax + 1) if l in parts]
    return torch.cat(flat, 1), tau


def packed_to_mcn(x: torch.Tensor, tau) -> torch.Tensor:
    """Packed ``(N, dim)`` of a type with C fragments in every part -> mcn ``(D, C, N)``."""
    tau = tuple(tau)
    if len(set(tau)) != 1 or tau[0] == 0:
        raise ValueError(f"the mcn layout needs the same fragment count for every l, got tau={tau}")
    return x.reshape(x.shape[0], x.shape[1] // tau[0], tau[0]).permute(1, 2, 0).contiguous()


def mcn_to_packed(x: torch.Tensor) -> torch.Tensor:
    """mcn ``(D, C, N)`` -> packed ``(N, D C)`` (type (C, ..., C))."""
    return x.permute(2, 0, 1).reshape(x.shape[2], x.shape[0] * x.shape[1])


def mcn_parts(x: torch.Tensor) -> dict[int, torch.Tensor]:
    """mcn ``(D, C, N)`` -> ``{l: (2l+1, C, N)}`` views."""
    lmax = int(round(x.shape[0] ** 0.5)) - 1
    if (lmax + 1) ** 2 != x.shape[0]:
        raise ValueError(f"an mcn tensor has (lmax+1)² rows, got {x.shape[0]}")
    return {l: x[l * l:(l + 1) * (l + 1)] for l in range(lmax + 1)}
