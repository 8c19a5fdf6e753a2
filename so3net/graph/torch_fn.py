"""Any torch function of tensors as an engine op, differentiable to any order.

``torch_fn(fn, *xs)`` records ``y = fn(*values)`` (tensors in, one tensor out) as one engine node.
Its backward is, for every input i that needs a gradient, again a ``torch_fn``: the vector-Jacobian
product ``(xs, g) -> (∂y/∂x_i)^* g`` evaluated by ``torch.autograd.grad`` on a re-run of ``fn`` —
so a gradient of a gradient is the VJP of that VJP, to any order, in torch's complex convention
(the engine's). Non-tensor arguments (index tensors, neighbour lists, modules) belong in ``fn``'s
closure, not in ``xs``.

It lets the engine run layers written once for torch (``so3net.nn``) without a second copy of them:
a ``NeuralNet`` holds the layers' weights as ``Parameter``s and passes them to ``fn`` (e.g. through
``torch.func.functional_call``). The cost is one extra forward of ``fn`` per gradient taken.
"""
from __future__ import annotations

import torch

from .engine import Function, Variable

__all__ = ["torch_fn"]


class _Vjp:
    """``(x_0, ..., x_{n-1}, g) -> vjp of fn with respect to x_i``, differentiable by torch itself."""

    def __init__(self, fn, i: int):
        self.fn, self.i = fn, i

    def __call__(self, *args):
        *xs, g = args
        with torch.enable_grad():
            xs = [x if x.requires_grad else x.detach().requires_grad_(x.is_floating_point() or x.is_complex())
                  for x in xs]   # inputs that already require grad (a VJP inside a VJP) stay on torch's graph
            y = self.fn(*xs)
            (gx,) = torch.autograd.grad(y, xs[self.i], g, create_graph=True, allow_unused=True)
        return torch.zeros_like(xs[self.i]) if gx is None else gx


class TorchFn(Function):
    """``fn(*xs)`` (see the module docstring)."""

    def forward(self, *xs, fn):
        self.fn = fn
        with torch.no_grad():
            y = fn(*xs)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"torch_fn expects fn to return one tensor, got {type(y).__name__}")
        return y

    def backward(self, g):
        return tuple(TorchFn.apply(*self.parents, g, fn=_Vjp(self.fn, i)) if need else None
                     for i, need in enumerate(self.needs))


def torch_fn(fn, *xs) -> Variable:
    """``fn(*values of xs)`` as an engine op (tensor Variables or tensors in, a tensor Variable out)."""
    return TorchFn.apply(*xs, fn=fn)
