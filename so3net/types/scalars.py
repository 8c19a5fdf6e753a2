"""GElib's scalar and tensor types: ``Rscalar``, ``Cscalar``, ``Ctensor`` (thin torch wrappers).

They exist so that code translated from the talk reads the same; all three hold a torch tensor in
``.value``/``.data`` and convert back with ``.torch()``.

- ``Rscalar(x)``: a real scalar, or one real scalar per sample (a tensor of batch shape).
- ``Cscalar(z)``: the same, complex.
- ``Ctensor(t)``: a complex tensor of any shape, printed in the talk's ``(re,im)`` format.

Multiplying an ``SO3part``/``SO3vec`` by an ``Rscalar``/``Cscalar`` (or a plain number, or a tensor
of batch shape) scales every sample by its scalar — this commutes with rotations, so it keeps
equivariance. A real scalar times complex data is fine; a complex scalar times real data is an
error (the result would not be real).
"""
from __future__ import annotations

import numbers

import torch

from ._checks import broadcast_batch
from ._format import dtype_name, rows

__all__ = ["Rscalar", "Cscalar", "Ctensor"]


class _Scalar:
    complex_valued = False

    def __init__(self, value=0.0, dtype=None, device=None):
        default = torch.complex64 if self.complex_valued else torch.float32
        if isinstance(value, _Scalar):
            value = value.value
        t = torch.as_tensor(value, device=device)
        if dtype is None:
            dtype = t.dtype if (t.is_complex() if self.complex_valued else t.is_floating_point()) else default
        if self.complex_valued != dtype.is_complex:
            kind = "complex" if self.complex_valued else "real floating"
            raise TypeError(f"{type(self).__name__} holds a {kind} dtype, got {dtype}")
        if t.is_complex() and not self.complex_valued:
            raise TypeError(f"Rscalar holds real values, got a complex value {value!r}; use Cscalar")
        self.value = t.to(dtype)

    def torch(self) -> torch.Tensor:
        return self.value

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def device(self):
        return self.value.device

    def __float__(self):
        return float(self.value)

    def __repr__(self):
        return f"{type(self).__name__}({self.value.tolist()!r})"

    def __str__(self):
        if self.value.dim() == 0:
            z = self.value.item()
            return f"({z.real:g},{z.imag:g})" if self.complex_valued else f"{z:g}"
        return str(self.value)


class Rscalar(_Scalar):
    """A real scalar (or one per sample); float32 unless the value or ``dtype`` says otherwise."""
    complex_valued = False


class Cscalar(_Scalar):
    """A complex scalar (or one per sample); complex64 unless the value or ``dtype`` says otherwise."""
    complex_valued = True

    def __complex__(self):
        return complex(self.value)


class Ctensor:
    """A complex tensor of any shape (``.data``), as in GElib; arithmetic is torch's."""

    def __init__(self, data, dtype=None, device=None):
        t = data.data if isinstance(data, Ctensor) else torch.as_tensor(data, device=device)
        dtype = dtype or (t.dtype if t.is_complex() else torch.complex64)
        if not dtype.is_complex:
            raise TypeError(f"Ctensor holds a complex dtype, got {dtype}")
        self.data = t.to(dtype)

    @classmethod
    def zeros(cls, *shape, dtype=torch.complex64, device=None) -> "Ctensor":
        return cls(torch.zeros(shape, dtype=dtype, device=device))

    @classmethod
    def randn(cls, *shape, dtype=torch.complex64, device=None, generator=None) -> "Ctensor":
        return cls(torch.randn(shape, dtype=dtype, device=device, generator=generator))

    def torch(self) -> torch.Tensor:
        return self.data

    @property
    def shape(self):
        return tuple(self.data.shape)

    def _other(self, other):
        return other.data if isinstance(other, Ctensor) else other

    def __add__(self, other):
        return Ctensor(self.data + self._other(other))

    def __sub__(self, other):
        return Ctensor(self.data - self._other(other))

    def __mul__(self, other):
        return Ctensor(self.data * self._other(other))

    __radd__, __rmul__ = __add__, __mul__

    def __matmul__(self, other):
        return Ctensor(self.data @ self._other(other))

    def __repr__(self):
        return f"Ctensor(shape={self.shape}, dtype={dtype_name(self.data.dtype)})"

    def __str__(self):
        t = self.data
        if t.dim() == 0:
            return f"({t.item().real:g},{t.item().imag:g})"
        if t.dim() == 1:
            t = t[:, None]
        if t.dim() == 2:  # one row per matrix row, like GElib's Ctensor printout
            return "\n".join(rows(t.transpose(0, 1)))
        return str(t)


def scalar_factor(s, batch: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor | complex | float:
    """The factor that multiplies data ``(batch..., 2l+1, n)`` for a scalar-like ``s``.

    Returns a Python number or a tensor shaped ``(..., 1, 1)``; raises TypeError/ValueError with
    the expected forms for anything else.
    """
    if isinstance(s, numbers.Number) and not isinstance(s, bool):
        if isinstance(s, complex) and not dtype.is_complex:
            raise TypeError(f"cannot multiply real data ({dtype}) by the complex scalar {s!r}")
        return s
    if isinstance(s, _Scalar):
        s = s.value
    if isinstance(s, Ctensor):
        s = s.data
    if not isinstance(s, torch.Tensor):
        raise TypeError(f"expected a number, Rscalar, Cscalar or a tensor of batch shape {batch}; "
                        f"got {type(s).__name__}")
    if s.is_complex() and not dtype.is_complex:
        raise TypeError(f"cannot multiply real data ({dtype}) by a complex tensor ({s.dtype})")
    real = dtype.to_real() if dtype.is_complex else dtype
    if s.dtype not in (dtype, real):
        expected = f"{dtype} or {real}" if real != dtype else f"{dtype}"
        raise TypeError(f"scalar dtype {s.dtype} does not match the data: expected {expected}")
    if s.device != torch.device(device):
        raise ValueError(f"scalar is on {s.device} but the data is on {device}")
    try:
        broadcast_batch(tuple(s.shape), batch, "scale")
    except ValueError:
        raise ValueError(f"a tensor factor must broadcast against the batch shape {batch} (one scalar per "
                         f"sample), got shape {tuple(s.shape)}") from None
    return s.to(dtype)[..., None, None]
