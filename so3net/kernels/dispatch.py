"""Backend dispatch of the CG product kernels: the one entry point from the layers above.

``cg_product(x, y, plan, backend=None)``, ``weighted_product(x, y, plan, weights=None,
backend=None)`` and ``message_passing_product(edge, node, src, dst, plan, weights=None,
num_nodes=None, backend=None)`` evaluate a compiled plan (:mod:`so3net.plan`) on packed tensors
and are differentiable by torch autograd to any order.

Backends (``BACKENDS``):

- ``"native"``: compiled C kernels on CPU tensors (:mod:`.native`, built with the system's C
  compiler on first use) for the plans they cover, the torch ops for the rest;
- ``"torch"``: torch ops only (the twin, :mod:`.torch_cg`), any device; the float64 oracle's peer;
- ``"triton"``: the fused Triton kernels, CUDA tensors (on CPU tensors only under the Triton
  interpreter, which needs ``TRITON_INTERPRET=1`` set before triton is first imported).

Choice, most specific first: the per-call ``backend=``, then the innermost ``with backend(...)``
block, then :func:`set_backend`, then automatic — CUDA tensors go to ``"triton"``; CPU tensors to
``"native"``, or to ``"torch"`` with one warning saying why when the kernels cannot be built. The
environment variable ``SO3NET_CPU_KERNELS`` = ``auto`` (default) | ``native`` | ``torch`` overrides
the automatic CPU choice (``native`` then raises if the kernels cannot be built). ``backend()``
with no argument answers which backend CPU tensors get now (``backend(device="cuda")``: CUDA
tensors). A backend that cannot run raises a ``RuntimeError`` saying why; nothing falls back
silently.
"""
from __future__ import annotations

import importlib
import os
import threading
import warnings
from types import ModuleType

import torch

from ..plan import CGPlan

__all__ = ["BACKENDS", "set_backend", "get_backend", "backend", "resolve", "cg_product", "weighted_product",
           "message_passing_product"]

BACKENDS = ("torch", "native", "triton")
_state = threading.local()
_default: list[str | None] = [None]
_ASK = object()


def _check_name(name: str | None) -> str | None:
    if name is not None and name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (or None for automatic), got {name!r}")
    return name


def set_backend(name: str | None) -> None:
    """Set the process-wide backend (``"torch"``, ``"native"``, ``"triton"``, or ``None`` for automatic)."""
    _default[0] = _check_name(name)


def get_backend() -> str | None:
    """The backend set for calls without ``backend=`` (``None``: automatic by device)."""
    stack = getattr(_state, "stack", [])
    return stack[-1] if stack else _default[0]


class _Using:
    """``with backend(name):`` (a statement ``backend(name)`` alone would do nothing: it warns)."""

    def __init__(self, name: str | None):
        self.name, self.entered = name, False

    def __enter__(self):
        self.entered = True
        _state.__dict__.setdefault("stack", []).append(self.name)
        return self.name

    def __exit__(self, *exc) -> None:
        _state.stack.pop()

    def __del__(self):
        if not self.entered:
            warnings.warn(f"so3net.backend({self.name!r}) outside a with statement does nothing: write "
                          f"`with backend({self.name!r}):`, or set_backend({self.name!r}) for the whole process",
                          RuntimeWarning, stacklevel=2)


def backend(name=_ASK, *, device="cpu"):
    """``with backend(name):`` uses ``name`` for the CG products inside the block (this thread only;
    ``None``: automatic). ``backend()`` answers the backend that tensors on ``device`` get now
    (``"native"``, ``"torch"`` or ``"triton"``), e.g. to print it."""
    if name is _ASK:
        return _choose(None, torch.device(device))
    return _Using(_check_name(name))


def _choose(name: str | None, device: torch.device) -> str:
    name = _check_name(name) or get_backend()
    if name is not None:
        return name
    if device.type == "cuda":
        return "triton"
    from . import native
    return "native" if native.library() is not None else "torch"


def resolve(name: str | None, like: torch.Tensor):
    """The engine of backend ``name`` (or the choice in force) for tensors like ``like``."""
    from . import torch_cg
    chosen = _choose(name, like.device)
    if chosen == "torch":
        return torch_cg.TORCH
    if chosen == "native":
        if like.device.type != "cpu":
            raise RuntimeError(f"backend 'native' runs compiled CPU kernels; the tensors are on {like.device}. "
                               f"Use 'triton' (CUDA) or 'torch'.")
        return torch_cg.NATIVE
    if like.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("backend 'triton' needs CUDA tensors; on CPU tensors it runs only under the Triton "
                           "interpreter (set TRITON_INTERPRET=1 before triton is first imported). "
                           "Use backend 'native' or 'torch' for CPU tensors.")
    try:
        module = importlib.import_module(".triton_ops", __package__)
    except ImportError as err:
        raise RuntimeError(f"backend 'triton' is not available: {err}") from err
    module.check_device(like)
    return module


def cg_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan, backend: str | None = None) -> torch.Tensor:
    """Evaluate ``plan`` on packed ``x (B, plan.dim1)``, ``y (B, plan.dim2)``: ``z (B, plan.dim_out)``."""
    return resolve(backend, x).cg_product(x, y, plan)


def weighted_product(x: torch.Tensor, y: torch.Tensor, plan: CGPlan, weights: torch.Tensor | None = None,
                     backend: str | None = None) -> torch.Tensor:
    """``plan`` with real per-sample weights ``(B, plan.num_weights)`` (entry k of path p uses column
    ``plan.weight_offsets[p] + k``): the "uvu" channel-wise product for a ``diag`` plan."""
    return resolve(backend, x).weighted_product(x, y, plan, weights)


def message_passing_product(edge: torch.Tensor, node: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                            plan: CGPlan, weights: torch.Tensor | None = None, num_nodes: int | None = None,
                            backend: str | None = None) -> torch.Tensor:
    """``out[i] = sum_{e: dst[e] = i} P(edge[e], node[src[e]], weights[e])``, packed
    ``(num_nodes, plan.dim_out)`` (``num_nodes`` defaults to ``node.shape[0]``); the Triton
    kernel gathers and scatter-sums inside, with no per-edge intermediate. Under the CPU backends
    ("native", "torch") an unweighted channel-wise plan of uniform fragment counts takes the outer
    strategy of :mod:`.message` (outer products of each atom's padded neighbour list, then one
    sparse CG contraction: dense batched matmuls, 2.7x the per-edge evaluation on Cormorant's
    edges); everything else goes per edge."""
    engine = resolve(backend, edge)
    if weights is None and not isinstance(engine, ModuleType):     # "native" or "torch": torch_cg engines
        from . import message
        if message.covers(plan):
            return message.message_passing_product(edge, node, src, dst, plan, num_nodes)
    return engine.message_passing_product(edge, node, src, dst, plan, weights, num_nodes)
