"""Triton launchers of the CG products: check, allocate, launch (kernels in :mod:`.triton_cg`).

Public functions have the signatures of the torch twin (:mod:`.torch_cg`) and are differentiable
to any order through :mod:`.autograd`: ``cg_product(x, y, plan)``,
``weighted_product(x, y, plan, weights=None)`` and
``message_passing_product(edge, node, src, dst, plan, weights=None, num_nodes=None)``.

Tensors must be on a CUDA device, or on the CPU when Triton runs its interpreter
(``TRITON_INTERPRET=1`` set before triton is first imported). Complex tensors are passed to the
kernels as interleaved real/imaginary planes (``torch.view_as_real``, no copy); conjugate views
and non-contiguous tensors are materialised first.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from types import SimpleNamespace

import torch
import triton

from ..plan import CGPlan
from . import _interpreter
from .autograd import message_product, product
from .rows import RowMap
from .triton_tables import kernel_tables, tiles

_interpreter.install()
from .triton_cg import bilinear_kernel, weight_grad_kernel  # noqa: E402  (after the interpreter fix)

__all__ = ["cg_product", "weighted_product", "message_passing_product", "bilinear", "weight_grad",
           "INTERPRETED", "check_device"]

_ENGINE = sys.modules[__name__]
INTERPRETED = type(bilinear_kernel).__name__ == "InterpretedFunction"
# tile sizes: fragments per program (G), entries per output fragment (R), the element budget of one
# (rows, G, R) tile and the warps per program. 1024 elements on 8 warps compile to about 80
# registers (fp32, sm_90) without spills; the interpreter runs whole numpy blocks, so it gets
# far larger tiles. Benchmarks may change these module attributes to sweep tile shapes.
MAX_BLOCK_G, MAX_BLOCK_R = 64, 32
TILE_ELEMENTS = 1 << 16 if INTERPRETED else 1024
NUM_WARPS = 8


def check_device(t: torch.Tensor) -> None:
    """Raise unless the Triton kernels can run on ``t``'s device."""
    if t.device.type == "cuda" and not INTERPRETED:
        return
    if t.device.type == "cpu" and INTERPRETED:
        return
    if t.device.type == "cpu":
        raise RuntimeError("the triton backend runs on CUDA tensors; for CPU tensors use the torch backend, "
                           "or set TRITON_INTERPRET=1 before triton is first imported to run the Triton "
                           "interpreter (slow, for tests)")
    why = "the Triton interpreter is active: it runs CPU tensors only" if INTERPRETED else "CUDA tensors only"
    raise RuntimeError(f"the triton backend cannot run on a {t.device} tensor ({why})")


@lru_cache(maxsize=1024)
def _device_tables(plan: CGPlan, device: torch.device, real: torch.dtype, planes: int) -> SimpleNamespace:
    """The plan's tables on ``device``: coefficients in the data's real dtype, term offsets in
    units of real elements (``planes`` = 2 for interleaved complex data)."""
    t = kernel_tables(plan)
    on = {k: torch.as_tensor(getattr(t, k), device=device) for k in t.__dataclass_fields__}
    on["coef"] = on["coef"].to(real)
    on["term_ma"], on["term_mb"] = on["term_ma"] * planes, on["term_mb"] * planes
    return SimpleNamespace(**on)


@lru_cache(maxsize=1024)
def _device_tiles(plan: CGPlan, block: int, by: str, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(tiles(plan, block, by), device=device)


def _pow2(n: int, cap: int, low: int = 2) -> int:
    return max(low, min(cap, triton.next_power_of_2(max(int(n), 1))))


def _planes(t: torch.Tensor) -> torch.Tensor:
    t = t.resolve_conj().contiguous()
    return torch.view_as_real(t) if t.is_complex() else t


def _real(t: torch.Tensor) -> torch.dtype:
    return t.real.dtype if t.is_complex() else t.dtype


def bilinear(plan: CGPlan, rows: RowMap | None, a, b, w, conj_out: bool) -> torch.Tensor:
    """Engine evaluation ``o(P(a, c(b), w))`` (see :mod:`.autograd`) with the fused kernel."""
    check_device(a)
    n_out = a.shape[0] if rows is None else rows.n_out
    z = (torch.empty if plan.covers_output else torch.zeros)(n_out, plan.dim_out, dtype=a.dtype, device=a.device)
    if n_out == 0 or not plan.segments:
        return z
    cplx = a.is_complex()
    ap, bp, zp = _planes(a), _planes(b), _planes(z)
    wp = ap if w is None else w.contiguous()
    T = _device_tables(plan, a.device, _real(a), 2 if cplx else 1)
    block_g = _pow2(max(len(s.out) for s in plan.segments), MAX_BLOCK_G)
    block_r = _pow2(max(g[1].shape[1] for g in plan.path_groups), MAX_BLOCK_R, low=1)
    block_b = _pow2(n_out, max(1, TILE_ELEMENTS // (block_g * block_r)))
    tile = _device_tiles(plan, block_g, "segment", a.device)
    csr = rows.csr if rows is not None else (T.seg,) * 4
    grid = (triton.cdiv(n_out, block_b), tile.shape[0])
    bilinear_kernel[grid](
        ap, bp, wp, zp, tile, T.seg, T.frag, T.path, T.left, T.right, T.entry,
        T.term_ptr, T.term_ma, T.term_mb, T.coef, *csr,
        n_out, ap.stride(0), bp.stride(0), wp.stride(0), zp.stride(0),
        IS_COMPLEX=cplx, CONJ_B=cplx and plan.conj_right, CONJ_OUT=cplx and conj_out,
        HAS_W=w is not None, HAS_ROWS=rows is not None, BLOCK_B=block_b, BLOCK_G=block_g, BLOCK_R=block_r,
        num_warps=NUM_WARPS)
    return z


def weight_grad(plan: CGPlan, rows: RowMap | None, g, a, b, conj_g: bool) -> torch.Tensor:
    """Engine evaluation of the weight gradient ``Re sum_m o(g) conj(u)`` (see :mod:`.autograd`)."""
    check_device(a)
    n_w = a.shape[0] if rows is None else rows.n_weight
    n = a.shape[0] if rows is None else rows.num_entries
    gw = (torch.empty if rows is None else torch.zeros)(n_w, plan.num_weights, dtype=_real(a), device=a.device)
    if n == 0 or plan.num_weights == 0:
        return gw
    cplx = a.is_complex()
    gp, ap, bp = _planes(g), _planes(a), _planes(b)
    T = _device_tables(plan, a.device, _real(a), 2 if cplx else 1)
    block_k = _pow2(max(p.size for p in plan.paths), MAX_BLOCK_G)
    block_b = _pow2(n, max(1, TILE_ELEMENTS // block_k))
    tile = _device_tiles(plan, block_k, "path", a.device)
    gather = (T.seg,) * 4 if rows is None else tuple(
        t.to(torch.int32) for t in (rows.out, rows.left, rows.right, rows.weight))
    grid = (triton.cdiv(n, block_b), tile.shape[0])
    weight_grad_kernel[grid](
        gp, ap, bp, gw, tile, T.wpath, T.ent_left, T.ent_right, T.ent_out,
        T.term_ptr, T.term_ma, T.term_mb, T.coef, *gather,
        n, gp.stride(0), ap.stride(0), bp.stride(0), gw.stride(0),
        IS_COMPLEX=cplx, CONJ_B=cplx and plan.conj_right, CONJ_G=cplx and conj_g, GATHER=rows is not None,
        BLOCK_B=block_b, BLOCK_K=block_k, num_warps=NUM_WARPS)
    return gw


# ---------------------------------------------------------------------------------- public API
def cg_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan) -> torch.Tensor:
    """Evaluate ``plan`` on packed ``x`` and ``y``; returns packed ``z (B, plan.dim_out)``."""
    return product(_ENGINE, plan, x, y)


def weighted_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan, weights: torch.Tensor | None = None):
    """``plan`` with real per-sample weights ``(B, plan.num_weights)``; see :mod:`.torch_cg`."""
    return product(_ENGINE, plan, x, y, weights)


def message_passing_product(edge: torch.Tensor, node: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                            plan: CGPlan, weights: torch.Tensor | None = None, num_nodes: int | None = None):
    """Fused ``out[i] = sum_{e: dst[e] = i} P(edge[e], node[src[e]], weights[e])``: gathers and the
    scatter-sum happen inside the kernel, no per-edge product is stored."""
    return message_product(_ENGINE, plan, edge, node, src, dst, weights, num_nodes)
