"""``CGpower(v, k, maxl)``: the irreducible decomposition of the symmetric power Sym^k(v).

Conventions: parts are SO3part tensors ``(b..., 2l+1, n)`` (DESIGN.md); the output holds every
V_L of Sym^k(V), L = 0..maxl, exactly with its multiplicity (character formula,
:mod:`so3net.power.characters`; parts of multiplicity 0 are present and empty), each fragment a
homogeneous degree-k polynomial in v that is equivariant:
``CGpower(v.rotate(R), k) == CGpower(v, k).rotate(R)``. Fragment order within part L is
documented in :mod:`so3net.power.program`. No normalisation is applied: every fragment is a
product of plain CG products of v's fragments.

Three kinds of input: an ``SO3vec`` (result ``SO3vec``, same basis), a dict ``{l: tensor}``
(result a dict), or a graph-engine ``Variable`` holding an SO3vec (result a ``Variable``; the op is
the chain of the engine's ``plan_product`` ops, so its backward is the sequence of their backward
CG products, to any order, and it can be recorded symbolically inside a ``NeuralNet``).
"""
from __future__ import annotations

import torch

from ..graph.engine import Variable, deferrable
from ..graph.so3ops import oplus, plan_product, take
from ..types import SO3vec
from .program import power_program

__all__ = ["CGpower"]


def _check_k(k) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"CGpower needs an integer power k >= 1, got {k!r}")


def _dict_type(parts: dict) -> tuple[int, ...]:
    if not parts or not all(isinstance(l, int) and torch.is_tensor(p) for l, p in parts.items()):
        raise TypeError("CGpower expects an SO3vec, a Variable holding one, or a dict {l: tensor (b..., 2l+1, n)}")
    return tuple(parts[l].shape[-1] if l in parts else 0 for l in range(max(parts) + 1))


def _power_variable(v: Variable, k: int, maxl):
    if not isinstance(v.value, SO3vec):
        raise TypeError(f"CGpower expects a Variable holding an SO3vec, got {type(v.value).__name__}")
    program = power_program(tuple(v.value.tau), (k,), maxl, v.value.basis)
    level = v
    for plan in program.plans:
        level = plan_product(level, v, plan)
    width = len(program.level_type(k))
    out = take(level, (slice(None),) * min(program.maxl + 1, width))
    if width >= program.maxl + 1:
        return out
    empty = SO3vec.zeros(v.value.batch, (0,) * (program.maxl + 1), dtype=v.value.dtype, device=v.value.device,
                         basis=v.value.basis)
    return oplus(out, Variable(empty))  # k = 1 with maxl above v's top l: empty parts, as for values


@deferrable
def CGpower(v, k: int, maxl: int | None = None):
    """The symmetric power Sym^k(v) decomposed into irreducible parts L = 0..maxl.

    ``v`` is an SO3vec, a dict of parts, or an engine Variable (module docstring); the result's
    type is ``sym_power_multiplicities(v.tau, k, maxl)``. ``maxl=None`` keeps every L (k · lmax).
    The program is compiled once per (tau, k, maxl, basis) and run by the CG kernels; the result
    is differentiable by torch autograd (and by the engine for Variables).
    """
    _check_k(k)
    if isinstance(v, Variable):
        return _power_variable(v, k, maxl)
    if isinstance(v, SO3vec):
        program = power_program(tuple(v.tau), (k,), maxl, v.basis)
        x = v.packed().reshape(-1, program.plans[0].dim2 if program.plans else v.tau.dim)
        tau = program.out_type(k)
        out = program(x)[0].reshape(*v.batch, sum((2 * l + 1) * n for l, n in enumerate(tau)))
        return SO3vec.from_packed(out, tau, basis=v.basis)
    if not isinstance(v, dict):
        raise TypeError(f"CGpower expects an SO3vec, a Variable holding one, or a dict of parts, "
                        f"got {type(v).__name__}")
    _dict_type(v)
    return dict(CGpower(SO3vec(v), k, maxl).parts)
