"""Compiled CPU kernels of the CG product family: forward and input gradients.

``full_cg.c`` evaluates every plan whose paths are row-matrices -- full products of any operand
types, the symmetric square, their backward plans and the forward-like second-order plan -- and
``zip_cg.c`` the channel-wise (``DiagCGproduct``) plans, reading only the nonzero CG terms, one
sample at a time, every inner loop a vectorised pass over the channels of a row (the files'
headers give the formulas); the torch twin's GEMMs (:mod:`..torch_blocks`) also multiply the
structural zeros and need uniform types, and its path-by-path evaluation is slower still.
:mod:`.layout` builds the tables (:func:`tables`), :mod:`.build` compiles and loads the kernels
and reads the mode switch ``SO3NET_CPU_KERNELS`` = ``auto`` | ``native`` | ``torch``
(:func:`library`, :func:`status`); threads: ``torch.get_num_threads()``. float32/float64 and
complex64/complex128 (interleaved; the CG coefficients are real in both bases) are covered; the
kernels compute plain bilinear forms, the callers pass conjugated operands where a plan reads them.
``padded_msg.c`` (the CG layer's message sum with a factored edge operand, in one pass per atom)
and ``pair_dots.c`` (atom-pair scalars over a neighbour list) take complex64/complex128 data only
(:func:`message_forward`, :func:`pair_dots_forward` and their backwards; used through
:mod:`so3net.kernels.message`).
"""
from __future__ import annotations

import ctypes

import torch

from .. import memory
from .build import MODES, cpu_summary, library, mode, status
from .layout import SUFFIX, Tables, ZipTables, tables

__all__ = ["mode", "library", "status", "cpu_summary", "Tables", "ZipTables", "tables", "forward", "backward",
           "message_forward", "message_backward", "pair_dots_forward", "pair_dots_backward", "MODES"]


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _dense(t: torch.Tensor | None) -> torch.Tensor | None:
    """Row-major storage the kernels can read (lazy conjugation and negation are applied here). A
    copy (an expanded gradient of a sum, a conjugate view) goes to a fresh tensor advised onto
    huge pages when large (:func:`..memory.empty`)."""
    if t is None or (t.is_contiguous() and not t.is_conj() and not t.is_neg()):
        return t
    return memory.empty(*t.shape, dtype=t.dtype, device=t.device).copy_(t)


def _function(lib, tables, name: str, dtype: torch.dtype):
    real = dtype.to_real() if dtype.is_complex else dtype
    kind = "_complex" if dtype.is_complex else ""
    variant = tables.variant(dtype)
    return getattr(lib, f"{tables.kernel}_{name}{kind}_{SUFFIX[real]}" + (f"_{variant}" if variant else ""))


def _coefficients(tables: Tables | ZipTables, dtype: torch.dtype):
    return tables._coef[dtype.to_real() if dtype.is_complex else dtype]


def _check(name: str, t: torch.Tensor | None, width: int, batch: int, dtype: torch.dtype, output: bool = False):
    """Raise unless ``t`` is a CPU tensor (batch, width) of ``dtype`` (and contiguous if an output)."""
    if t is None:
        raise ValueError(f"{name} is required here")
    real = dtype.to_real() if dtype.is_complex else dtype
    if real not in SUFFIX:
        raise TypeError(f"compiled CG kernels take float32, float64, complex64 or complex128, got {dtype}")
    if t.dtype != dtype or t.device.type != "cpu" or tuple(t.shape) != (batch, width):
        raise ValueError(f"{name}: expected a CPU tensor of shape {(batch, width)} and dtype {dtype}, got "
                         f"{tuple(t.shape)} {t.dtype} on {t.device}")
    if output and not t.is_contiguous():
        raise ValueError(f"{name}: the output must be contiguous")


def _run(function, *args) -> None:
    if function(*args, torch.get_num_threads()) != 0:
        raise MemoryError("a compiled CG kernel could not allocate its per-thread scratch memory")


def forward(lib, tables: Tables | ZipTables, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out (B, dim_out)`` = the product of packed ``x (B, dim1)`` and ``y (B, dim2)`` (CPU tensors
    of one dtype; ``out`` contiguous). Shapes and dtypes are checked."""
    batch = x.shape[0] if x.dim() == 2 else -1
    _check("x", x, tables.dim1, batch, x.dtype)
    _check("y", y, tables.dim2, batch, x.dtype)
    _check("out", out, tables.dim_out, batch, x.dtype, output=True)
    x, y = _dense(x), _dense(y)
    qc, _ = _coefficients(tables, x.dtype)
    function = _function(lib, tables, "forward", x.dtype)
    _run(function, ctypes.byref(tables.struct), _ptr(qc), batch, _ptr(x), _ptr(y), _ptr(out))
    return out


def backward(lib, tables: Tables | ZipTables, gz: torch.Tensor, x: torch.Tensor | None, y: torch.Tensor | None,
             gx: torch.Tensor | None, gy: torch.Tensor | None) -> None:
    """Fill ``gx (B, dim1)`` (needs ``y``) and/or ``gy (B, dim2)`` (needs ``x``) from ``gz (B, dim_out)``
    (contiguous outputs of gz's dtype): the bilinear forms of the module docstring, no conjugation."""
    batch = gz.shape[0] if gz.dim() == 2 else -1
    _check("gz", gz, tables.dim_out, batch, gz.dtype)
    if gx is None and gy is None:
        raise ValueError("backward needs gx, gy or both")
    if gx is not None:
        _check("gx", gx, tables.dim1, batch, gz.dtype, output=True)
        _check("y (for gx)", y, tables.dim2, batch, gz.dtype)
    if gy is not None:
        _check("gy", gy, tables.dim2, batch, gz.dtype, output=True)
        _check("x (for gy)", x, tables.dim1, batch, gz.dtype)
    gz, x, y = _dense(gz), _dense(x), _dense(y)
    qc, pc = _coefficients(tables, gz.dtype)
    function = _function(lib, tables, "backward", gz.dtype)
    coefficients = (_ptr(qc),) if isinstance(tables, ZipTables) else (_ptr(qc), _ptr(pc))
    _run(function, ctypes.byref(tables.struct), *coefficients, batch, _ptr(gz), _ptr(x), _ptr(y), _ptr(gx), _ptr(gy))



def _message_args(scalars: torch.Tensor, harmonics: torch.Tensor, node: torch.Tensor, src: torch.Tensor, rows,
                  num_rows: int):
    """Check the fused message kernel's operands (see ``padded_msg.c``); returns its size and table arguments."""
    N, d, L1, C = scalars.shape
    if not scalars.is_complex() or scalars.dtype.to_real() not in SUFFIX:
        raise TypeError(f"the fused message kernel takes complex64 or complex128 data, got {scalars.dtype}")
    if harmonics.shape != (N, d, L1 * L1) or harmonics.dtype != scalars.dtype:
        raise ValueError(f"harmonics must be {(N, d, L1 * L1)} of dtype {scalars.dtype}, got "
                         f"{tuple(harmonics.shape)} {harmonics.dtype}")
    if node.dtype != scalars.dtype or node.dim() != 2 or node.shape[1] % C:
        raise ValueError(f"node must be (n, D2 * {C}) of dtype {scalars.dtype}, got {tuple(node.shape)} {node.dtype}")
    if src.shape != (N, d) or src.dtype != torch.int64:
        raise ValueError(f"src must be int64 of shape {(N, d)}, got {tuple(src.shape)} {src.dtype}")
    if any(t.device.type != "cpu" or not t.is_contiguous() or t.is_conj() or t.is_neg()
           for t in (scalars, harmonics, node, src)):
        raise ValueError("the fused message kernel reads contiguous CPU tensors without lazy conjugation or negation")
    wrow, cols, coef = rows
    if not all(t.is_contiguous() and t.device.type == "cpu" for t in rows):
        raise ValueError("the contraction tables (wrow, columns, coefficients) must be contiguous CPU tensors")
    return (N, d, C, L1, node.shape[1] // C, node.shape[0], num_rows), (_ptr(wrow), _ptr(cols), _ptr(coef))


def message_forward(lib, scalars: torch.Tensor, harmonics: torch.Tensor, node: torch.Tensor, src: torch.Tensor,
                    rows, num_rows: int) -> torch.Tensor:
    """``z (N, num_rows C)``: the fused outer strategy of ``padded_msg.c`` for the edge operand
    ``scalars (N, d, L1, C)`` ⊗ ``harmonics (N, d, L1²)``, packed nodes ``node (n, D2 C)``, slots
    ``src (N, d)`` (outside [0, n): empty) and contraction ``rows`` = (wrow, columns, coefficients) of
    :meth:`so3net.kernels.message.OuterContraction.fused_rows`."""
    sizes, table = _message_args(scalars, harmonics, node, src, rows, num_rows)
    out = torch.empty(sizes[0], num_rows * sizes[2], dtype=scalars.dtype)
    function = getattr(lib, f"padded_msg_forward_{SUFFIX[scalars.dtype.to_real()]}")
    _run(function, *sizes, _ptr(scalars), _ptr(harmonics), _ptr(node), _ptr(src), *table, _ptr(out))
    return out


def message_backward(lib, gz: torch.Tensor, scalars: torch.Tensor, harmonics: torch.Tensor, node: torch.Tensor,
                     src: torch.Tensor, rows, num_rows: int, want: tuple[bool, bool, bool]) -> tuple:
    """``(grad scalars, grad harmonics, grad node)`` of a real loss with gradient ``gz`` of
    :func:`message_forward`'s output (None where ``want`` says no)."""
    sizes, table = _message_args(scalars, harmonics, node, src, rows, num_rows)
    gz = _dense(gz)
    if gz.shape != (sizes[0], num_rows * sizes[2]) or gz.dtype != scalars.dtype:
        raise ValueError(f"gz must be {(sizes[0], num_rows * sizes[2])} of dtype {scalars.dtype}, got "
                         f"{tuple(gz.shape)} {gz.dtype}")
    grads = [torch.empty_like(t) if w else None for t, w in zip((scalars, harmonics, node), want)]
    function = getattr(lib, f"padded_msg_backward_{SUFFIX[scalars.dtype.to_real()]}")
    _run(function, *sizes, _ptr(gz), _ptr(scalars), _ptr(harmonics), _ptr(node), _ptr(src), *table,
         *(_ptr(g) for g in grads))
    return tuple(grads)



def _dots_args(node: torch.Tensor, channels: int, rows: torch.Tensor, src: torch.Tensor, first: torch.Tensor,
               size: torch.Tensor):
    N, d = src.shape
    if not node.is_complex() or node.dtype.to_real() not in SUFFIX or node.dim() != 2 or node.shape[1] % channels:
        raise ValueError(f"node must be complex64/complex128 (n, D * {channels}), got {tuple(node.shape)} {node.dtype}")
    if rows.shape != (N,) or any(t.dtype != torch.int64 for t in (rows, src, first, size)) or first.shape != size.shape:
        raise ValueError("rows (N,), src (N, d), first and size (parts,) must be int64")
    if any(t.device.type != "cpu" or not t.is_contiguous() or t.is_conj() or t.is_neg()
           for t in (node, rows, src, first, size)):
        raise ValueError("the pair-dots kernel reads contiguous CPU tensors without lazy conjugation or negation")
    if N and (int(rows.min()) < 0 or int(rows.max()) >= node.shape[0]):
        raise ValueError(f"the rows' nodes must lie in [0, {node.shape[0]}), got {int(rows.min())}..{int(rows.max())}")
    if first.numel() and (int(first.min()) < 0 or int((first + size).max()) > node.shape[1] // channels):
        raise ValueError(f"parts (first, size) must lie within the {node.shape[1] // channels} rows of a node")
    return (N, d, channels, node.shape[1] // channels, node.shape[0], first.shape[0])


def pair_dots_forward(lib, node: torch.Tensor, channels: int, rows: torch.Tensor, src: torch.Tensor,
                      first: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """``(N, d, parts C)``: ``pair_dots.c``'s Σ_m conj(X[row_i]) X[src_ik] per present part and channel."""
    sizes = _dots_args(node, channels, rows, src, first, size)
    out = torch.empty(sizes[0], sizes[1], sizes[5] * channels, dtype=node.dtype)
    function = getattr(lib, f"pair_dots_forward_{SUFFIX[node.dtype.to_real()]}")
    _run(function, *sizes, _ptr(node), _ptr(rows), _ptr(src), _ptr(first), _ptr(size), _ptr(out))
    return out


def pair_dots_backward(lib, grad: torch.Tensor, node: torch.Tensor, channels: int, rows: torch.Tensor,
                       src: torch.Tensor, first: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """The gradient of ``node`` (n, D C) for the gradient ``grad`` of :func:`pair_dots_forward`'s output."""
    sizes = _dots_args(node, channels, rows, src, first, size)
    grad = _dense(grad)
    if grad.shape != (sizes[0], sizes[1], sizes[5] * channels) or grad.dtype != node.dtype:
        raise ValueError(f"grad must be {(sizes[0], sizes[1], sizes[5] * channels)} {node.dtype}, got "
                         f"{tuple(grad.shape)} {grad.dtype}")
    out = torch.empty_like(node)
    function = getattr(lib, f"pair_dots_backward_{SUFFIX[node.dtype.to_real()]}")
    _run(function, *sizes, _ptr(grad), _ptr(node), _ptr(rows), _ptr(src), _ptr(first), _ptr(size), _ptr(out))
    return out
