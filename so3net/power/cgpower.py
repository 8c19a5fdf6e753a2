"""``CGpower(v, k, maxl)``: the irreducible decomposition of the symmetric power Sym^k(v).

Conventions: parts are SO3part tensors ``(b..., 2l+1, n)`` (DESIGN.md); the output holds every
V_L of Sym^k(V), L <= maxl, exactly with its multiplicity (character formula,
:mod:`so3net.power.characters`), each fragment a homogeneous degree-k polynomial in v that is
equivariant: ``CGpower(v.rotate(R)) == CGpower(v).rotate(R)``. Fragment order within part L is
documented in :mod:`so3net.power.program`. No normalisation is applied: every fragment is a
product of plain CG products of v's fragments.
"""
from __future__ import annotations

import torch

from .program import power_program

__all__ = ["CGpower", "pack_parts", "unpack_parts"]


def pack_parts(parts: dict[int, torch.Tensor], tau: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pack ``{l: (b..., 2l+1, n)}`` into ``(B, dim)`` (see :mod:`so3net.plan`); returns the batch shape."""
    batch = None
    flat = []
    for l, n in enumerate(tau):
        if n == 0:
            continue
        part = parts[l]
        if part.dim() < 2 or part.shape[-2:] != (2 * l + 1, n):
            raise ValueError(f"part l={l} must have shape (b..., {2 * l + 1}, {n}), got {tuple(part.shape)}")
        if batch is None:
            batch = tuple(part.shape[:-2])
        elif tuple(part.shape[:-2]) != batch:
            raise ValueError(f"all parts need one batch shape; got {batch} and {tuple(part.shape[:-2])} at l={l}")
        flat.append(part.reshape(-1, (2 * l + 1) * n))
    return torch.cat(flat, 1), batch


def unpack_parts(x: torch.Tensor, tau: tuple[int, ...], batch: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Inverse of :func:`pack_parts`: every l of tau gets a part, zero counts included."""
    parts, offset = {}, 0
    for l, n in enumerate(tau):
        size = (2 * l + 1) * n
        parts[l] = x[:, offset:offset + size].reshape(*batch, 2 * l + 1, n)
        offset += size
    return parts


def _parts_and_type(v) -> tuple[dict[int, torch.Tensor], tuple[int, ...]]:
    parts = v.parts if hasattr(v, "parts") else v
    if not isinstance(parts, dict) or not parts:
        raise TypeError(f"CGpower expects an SO3vec or a dict {{l: tensor (b..., 2l+1, n)}}, got {type(v).__name__}")
    if hasattr(v, "tau"):
        return parts, tuple(int(n) for n in v.tau)
    top = max(parts)
    return parts, tuple(parts[l].shape[-1] if l in parts else 0 for l in range(top + 1))


def _rewrap(parts: dict[int, torch.Tensor], like):
    return parts if isinstance(like, dict) else type(like)(parts)


def CGpower(v, k: int, maxl: int | None = None, backend: str | None = None):
    """The symmetric power Sym^k(v) decomposed into irreducible parts L = 0..maxl.

    ``v`` is an SO3vec (or a dict of parts); the result has the same kind, with type
    ``sym_power_multiplicities(v.tau, k, maxl)``. ``maxl=None`` keeps every L (k · lmax).
    The program is compiled once per (tau, k, maxl) and run by the CG kernels; the result is
    differentiable by torch autograd.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"CGpower needs an integer power k >= 1, got {k!r}")
    parts, tau = _parts_and_type(v)
    program = power_program(tau, (k,), maxl, getattr(v, "basis", "complex"))
    x, batch = pack_parts(parts, tau)
    out = program(x, backend)[0]
    return _rewrap(unpack_parts(out, program.out_type(k), batch), v)
