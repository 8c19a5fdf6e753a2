"""Primitive ops on tensors (and the generic ones that also work on SO3vec values).

One small class per primitive: ``forward`` computes the value from plain values, ``backward``
returns one gradient per input, written with these same ops so that it is differentiable again.
Gradients follow torch's complex convention (see :mod:`so3net.graph.engine`): for ``z = x * y`` the
gradient of x is ``g * conj(y)``; a real input of a complex op receives the real part; an input that
was broadcast receives the gradient summed back to its shape (:func:`like`).
"""
from __future__ import annotations

import math

import torch

from .engine import Function, Variable, deferrable

__all__ = ["add", "sub", "neg", "mul", "div", "pow", "exp", "log", "sin", "cos", "tanh", "sigmoid",
           "relu", "silu", "sqrt", "matmul", "sum", "mean", "reshape", "expand", "sum_to", "conj", "real",
           "imag", "as_complex", "index", "gather", "scatter_sum", "cat", "like", "is_complex", "constant"]


def is_complex(value) -> bool:
    """Whether a value (tensor, SO3vec or Python number) holds complex numbers."""
    if isinstance(value, torch.Tensor):
        return value.is_complex()
    if isinstance(value, complex):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and dtype.is_complex


def constant(value) -> Variable:
    return Variable(value)


def like(g: Variable, p: Variable) -> Variable:
    """``g`` brought back to the shape and realness of input ``p`` (sum over broadcast dims, real
    part for a real input) — the two adjustments torch makes at the end of every backward."""
    gv, pv = g.value, p.value
    if isinstance(pv, torch.Tensor) and isinstance(gv, torch.Tensor):
        if gv.shape != pv.shape:
            g = SumTo.apply(g, shape=tuple(pv.shape))
        if gv.is_complex() and not pv.is_complex():
            g = Real.apply(g)
    elif hasattr(pv, "parts") and gv.batch != pv.batch:
        g = SumTo.apply(g, shape=tuple(pv.batch))
    elif isinstance(pv, (int, float)) and is_complex(gv):
        g = Real.apply(g)
    return g


def conj(x: Variable) -> Variable:
    """Complex conjugate; the Variable itself when its value is real (no node recorded)."""
    x = x if isinstance(x, Variable) else Variable(x)
    return Conj.apply(x) if x.symbolic or is_complex(x.value) else x


# ------------------------------------------------------------------------------ arithmetic
class Add(Function):
    def forward(self, x, y): return x + y
    def backward(self, g): return like(g, self.parents[0]), like(g, self.parents[1])


class Sub(Function):
    def forward(self, x, y): return x - y
    def backward(self, g): return like(g, self.parents[0]), like(-g, self.parents[1])


class Neg(Function):
    def forward(self, x): return -x
    def backward(self, g): return (-g,)


class Mul(Function):
    """Elementwise product of tensors (broadcasting)."""
    def forward(self, x, y): return x * y

    def backward(self, g):
        x, y = self.parents
        return (like(g * conj(y), x) if self.needs[0] else None,
                like(g * conj(x), y) if self.needs[1] else None)


class Div(Function):
    def forward(self, x, y): return x / y

    def backward(self, g):
        x, y = self.parents
        return (like(g / conj(y), x) if self.needs[0] else None,
                like(-g * conj(x / (y * y)), y) if self.needs[1] else None)


class Pow(Function):
    """``x ** p`` for a constant exponent p."""
    def forward(self, x, p): self.p = p; return x ** p
    def backward(self, g): x = self.parents[0]; return (like(g * conj(self.p * x ** (self.p - 1)), x),)


class Exp(Function):
    def forward(self, x): return torch.exp(x)
    def backward(self, g): return (g * conj(exp(self.parents[0])),)


class Log(Function):
    def forward(self, x): return torch.log(x)
    def backward(self, g): return (g / conj(self.parents[0]),)


class Sin(Function):
    def forward(self, x): return torch.sin(x)
    def backward(self, g): return (g * conj(cos(self.parents[0])),)


class Cos(Function):
    def forward(self, x): return torch.cos(x)
    def backward(self, g): return (-g * conj(sin(self.parents[0])),)


class Tanh(Function):
    def forward(self, x): return torch.tanh(x)
    def backward(self, g): t = tanh(self.parents[0]); return (g * conj(1 - t * t),)


class Sigmoid(Function):
    def forward(self, x): return torch.sigmoid(x)
    def backward(self, g): s = sigmoid(self.parents[0]); return (g * conj(s * (1 - s)),)


class Relu(Function):
    """Real inputs only; the derivative at 0 is taken as 0 (as torch does)."""
    def forward(self, x): return torch.relu(x)
    def backward(self, g): return (g * Variable((self.parents[0].value > 0).to(g.value.dtype)),)


class Silu(Function):
    """``x * sigmoid(x)`` on real inputs; derivative ``s (1 + x (1 - s))`` with s = sigmoid(x)."""
    def forward(self, x): return torch.nn.functional.silu(x)
    def backward(self, g): x = self.parents[0]; s = sigmoid(x); return (g * (s * (1 + x * (1 - s))),)


# ------------------------------------------------------------------------------ complex parts
class Conj(Function):
    def forward(self, x): return x.conjugate() if isinstance(x, complex) else x.conj()
    def backward(self, g): return (Conj.apply(g),)


class Real(Function):
    def forward(self, x): return x.real
    def backward(self, g): return (AsComplex.apply(g),)


class Imag(Function):
    def forward(self, x): return x.imag
    def backward(self, g): return (AsComplex.apply(g) * 1j,)


class AsComplex(Function):
    """A real tensor viewed as complex (zero imaginary part)."""
    def forward(self, x): return x.to(torch.promote_types(x.dtype, torch.complex64))
    def backward(self, g): return (Real.apply(g),)


# ------------------------------------------------------------------------------ linear algebra, shapes
class MatMul(Function):
    """``x @ w`` for tensors with at least two dims (batch dims broadcast)."""
    def forward(self, x, w):
        if x.dim() < 2 or w.dim() < 2:
            raise ValueError(f"matmul expects tensors with >= 2 dims, got shapes {tuple(x.shape)} and {tuple(w.shape)}")
        dtype = torch.promote_types(x.dtype, w.dtype)  # torch.matmul does not promote
        return torch.matmul(x.to(dtype), w.to(dtype))

    def backward(self, g):
        x, w = self.parents
        return (like(matmul(g, conj(transpose(w))), x) if self.needs[0] else None,
                like(matmul(conj(transpose(x)), g), w) if self.needs[1] else None)


class Transpose(Function):
    """Swap the last two dims."""
    def forward(self, x): return x.transpose(-1, -2)
    def backward(self, g): return (Transpose.apply(g),)


class Sum(Function):
    def forward(self, x, dim=None, keepdim=False):
        self.shape, self.dim, self.keepdim = tuple(x.shape), dim, keepdim
        return x.sum() if dim is None else x.sum(dim, keepdim=keepdim)

    def backward(self, g):
        if self.dim is not None and not self.keepdim:
            dims = [self.dim] if isinstance(self.dim, int) else list(self.dim)
            dims = sorted(d % len(self.shape) for d in dims)
            kept = [1 if i in dims else n for i, n in enumerate(self.shape)]
            g = reshape(g, tuple(kept))
        return (expand(g, self.shape),)


class Reshape(Function):
    def forward(self, x, shape): self.shape = tuple(x.shape); return x.reshape(shape)
    def backward(self, g): return (reshape(g, self.shape),)


class Expand(Function):
    """Broadcast a tensor to ``shape`` (an SO3vec: its batch to ``shape``)."""
    def forward(self, x, shape):
        self.shape = _shape(x)
        return _batchwise(x, shape, lambda t, s: t.expand(s))

    def backward(self, g): return (sum_to(g, self.shape),)


class SumTo(Function):
    """Sum a broadcast tensor back to ``shape`` (an SO3vec: its batch); the adjoint of ``expand``."""
    def forward(self, x, shape):
        self.shape = _shape(x)
        return _batchwise(x, shape, _sum_to)

    def backward(self, g): return (expand(g, self.shape),)


def _shape(x) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else tuple(x.batch)


def _batchwise(x, shape, f):
    """``f(tensor, shape)``, or for an SO3vec ``f(part, shape + part.shape[-2:])`` on every part."""
    if isinstance(x, torch.Tensor):
        return f(x, tuple(shape))
    return x._map(lambda l, p: f(p, tuple(shape) + tuple(p.shape[-2:])))


def _sum_to(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    lead = x.dim() - len(shape)
    dims = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    return x.sum(dims, keepdim=True).reshape(shape) if dims else x.reshape(shape)


class Index(Function):
    """``x[idx]`` with basic indexing (ints, slices, None, Ellipsis): a view, no repeats."""
    def forward(self, x, idx): self.shape, self.idx = tuple(x.shape), idx; return x[idx]
    def backward(self, g): return (IndexFill.apply(g, idx=self.idx, shape=self.shape),)


class IndexFill(Function):
    """Zeros of ``shape`` with ``g`` written at ``idx`` (the adjoint of basic indexing)."""
    def forward(self, g, idx, shape):
        self.idx = idx
        out = g.new_zeros(shape)
        out[idx] = g
        return out

    def backward(self, g): return (index(g, self.idx),)


# ------------------------------------------------------------------------------ graph indices
class Gather(Function):
    """Rows ``x[index]`` along dim 0 (tensor or SO3vec; ``index`` a 1-D long tensor)."""
    def forward(self, x, index):
        self.index, self.n = index, _shape(x)[0]
        return _rows(x, lambda t: t.index_select(0, index))

    def backward(self, g): return (scatter_sum(g, self.index, self.n),)


class ScatterSum(Function):
    """``out[index[k]] += x[k]`` into ``n`` rows along dim 0 (the adjoint of ``gather``)."""
    def forward(self, x, index, n):
        self.index = index
        return _rows(x, lambda t: t.new_zeros((n,) + tuple(t.shape[1:])).index_add_(0, index, t))

    def backward(self, g): return (gather(g, self.index),)


def _rows(x, f):
    """Apply a dim-0 operation to a tensor, or to every part of an SO3vec."""
    if isinstance(x, torch.Tensor):
        return f(x)
    return x._map(lambda l, p: f(p))


class Cat(Function):
    """Concatenate tensors along ``dim``."""
    def forward(self, *xs, dim=0):
        self.dim, self.sizes = dim, [x.shape[dim] for x in xs]
        return torch.cat(xs, dim)

    def backward(self, g):
        starts = [0]
        for n in self.sizes:
            starts.append(starts[-1] + n)
        d = self.dim % g.value.dim()
        return tuple(index(g, (slice(None),) * d + (slice(a, b),)) for a, b in zip(starts, starts[1:]))


# ------------------------------------------------------------------------------ functional API
add, sub, neg, div = Add.apply, Sub.apply, Neg.apply, Div.apply
exp, log, sin, cos = Exp.apply, Log.apply, Sin.apply, Cos.apply
tanh, sigmoid, relu, silu = Tanh.apply, Sigmoid.apply, Relu.apply, Silu.apply
matmul, transpose, imag, as_complex = MatMul.apply, Transpose.apply, Imag.apply, AsComplex.apply


def real(x):
    """Real part; the Variable itself when its value is real (no node recorded)."""
    x = x if isinstance(x, Variable) else Variable(x)
    return Real.apply(x) if x.symbolic or is_complex(x.value) else x


def pow(x, p):
    """``x ** p`` for a constant number ``p``."""
    return Pow.apply(x, p=p)


def sqrt(x):
    return Pow.apply(x, p=0.5)


def sum(x, dim=None, keepdim: bool = False):
    return Sum.apply(x, dim=dim, keepdim=keepdim)


@deferrable
def mean(x, dim=None, keepdim: bool = False):
    v = x.value
    n = v.numel() if dim is None else math.prod(v.shape[d] for d in ([dim] if isinstance(dim, int) else dim))
    return sum(x, dim, keepdim) * (1.0 / n)


def reshape(x, shape):
    return Reshape.apply(x, shape=tuple(shape))


def expand(x, shape):
    return Expand.apply(x, shape=tuple(shape))


def sum_to(x, shape):
    return SumTo.apply(x, shape=tuple(shape))


def index(x, idx):
    """Basic indexing ``x[idx]`` (ints, slices, None, Ellipsis)."""
    return Index.apply(x, idx=idx)


def gather(x, index):
    """Rows ``x[index]`` along dim 0 of a tensor or an SO3vec (``index``: 1-D long tensor)."""
    return Gather.apply(x, index=index)


def scatter_sum(x, index, n: int):
    """Sum rows of a tensor or an SO3vec into ``n`` rows: ``out[index[k]] += x[k]``."""
    return ScatterSum.apply(x, index=index, n=int(n))


def cat(xs, dim: int = 0):
    """Concatenate a list of tensor Variables along ``dim``."""
    return Cat.apply(*xs, dim=dim)


@deferrable
def mul(x, y):
    """``x * y``: elementwise for tensors; for an SO3vec times a number or a batch-shaped tensor,
    per-sample scaling; for an SO3vec times per-l weights, weight mixing (see :mod:`.so3ops`)."""
    xv, yv = _value(x), _value(y)
    if hasattr(xv, "parts") or hasattr(yv, "parts"):
        from .so3ops import so3_mul
        return so3_mul(x, y)
    return Mul.apply(x, y)


def _value(x):
    return x.value if isinstance(x, Variable) else x


def _getitem(x, idx):
    if isinstance(idx, Variable):
        idx = idx.value
    if isinstance(idx, torch.Tensor):
        if idx.dtype == torch.bool:
            idx = idx.nonzero().squeeze(1)
        return gather(x, idx)
    return index(x, idx)


# ------------------------------------------------------------------------------ Variable operators
Variable.__add__ = lambda a, b: add(a, b)
Variable.__radd__ = lambda a, b: add(b, a)
Variable.__sub__ = lambda a, b: sub(a, b)
Variable.__rsub__ = lambda a, b: sub(b, a)
Variable.__neg__ = lambda a: neg(a)
def _mul_operator(a, b):
    # the common case, tensors or numbers on both sides, skips the deferral and SO3vec dispatch
    if not a.symbolic and isinstance(a.value, torch.Tensor) and (
            isinstance(b, (int, float, complex)) or isinstance(b, Variable) and not b.symbolic
            and isinstance(b.value, (torch.Tensor, int, float, complex))):
        return Mul.apply(a, b)
    return mul(a, b)


Variable.__mul__ = _mul_operator
Variable.__rmul__ = lambda a, b: _mul_operator(a, b) if isinstance(b, (int, float, complex)) else mul(b, a)
Variable.__truediv__ = lambda a, b: div(a, b)
Variable.__rtruediv__ = lambda a, b: div(b, a)
Variable.__pow__ = lambda a, p: pow(a, p)
Variable.__matmul__ = lambda a, b: matmul(a, b)
Variable.__rmatmul__ = lambda a, b: matmul(b, a)
Variable.__getitem__ = deferrable(_getitem)
Variable.sum = lambda a, dim=None, keepdim=False: sum(a, dim, keepdim)
Variable.mean = lambda a, dim=None, keepdim=False: mean(a, dim, keepdim)
Variable.reshape = lambda a, *shape: reshape(a, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
Variable.conj = lambda a: conj(a)
Variable.real = property(lambda a: real(a))
Variable.imag = property(lambda a: imag(a))
Variable.exp = lambda a: exp(a)
Variable.log = lambda a: log(a)
Variable.sqrt = lambda a: sqrt(a)
Variable.relu = lambda a: relu(a)
Variable.sigmoid = lambda a: sigmoid(a)
Variable.tanh = lambda a: tanh(a)
