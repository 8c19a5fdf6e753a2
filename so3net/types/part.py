"""``SO3part``: n fragments of degree l over batch dimensions b..., stored as ``(b..., 2l+1, n)``.

Layout (fixed, GElib's): index ``m + l`` for m = -l..l on the second-to-last axis, fragments
(channels) last, any number of leading batch dimensions. Default dtype complex64 in the complex
basis (Condon–Shortley), float32 in the real basis; complex128/float64 for checks.

The group acts by ``F -> D^l(R) F`` (``rotate``), which commutes with everything that acts on
the fragment axis (``p @ W`` mixing, slicing, direct sums) and with per-sample scalars.
"""
from __future__ import annotations

import torch

from ._checks import (batch_tuple, broadcast_batch, check_basis, check_degree, check_part_tensor, check_same_storage,
                      check_target_dtype, fill_part, resolve_dtype)
from ._basis import convert_part
from ._format import dtype_name, format_samples, part_block
from .rotation import check_block, check_rotation, rotation_block
from .scalars import scalar_factor

__all__ = ["SO3part"]


class SO3part:
    """A tensor ``data`` of shape ``(b..., 2l+1, n)`` in the ``basis`` "complex" or "real"."""

    __slots__ = ("data", "basis")

    def __init__(self, data: torch.Tensor, basis: str = "complex"):
        check_basis(basis)
        if isinstance(data, SO3part):
            data = data.data
        check_part_tensor(data, None, basis)
        self.data, self.basis = data, basis

    # ----------------------------------------------------------------- constructors
    @classmethod
    def filled(cls, b, l: int, n: int, fill: str = "zero", *, dtype=None, device=None, basis: str = "complex",
               generator: torch.Generator | None = None) -> "SO3part":
        """A part with batch ``b`` (None, int or tuple), degree ``l`` and ``n`` fragments, filled as
        GElib's ``fill::zero|ones|gaussian|sequential|identity``."""
        l, n = check_degree(l), check_degree(n, "n")
        dtype = resolve_dtype(dtype, basis)
        return cls(fill_part(fill, batch_tuple(b), l, n, dtype, device, generator), basis)

    @classmethod
    def zeros(cls, b, l, n, **kw) -> "SO3part":
        return cls.filled(b, l, n, "zero", **kw)

    @classmethod
    def ones(cls, b, l, n, **kw) -> "SO3part":
        return cls.filled(b, l, n, "ones", **kw)

    @classmethod
    def randn(cls, b, l, n, **kw) -> "SO3part":
        return cls.filled(b, l, n, "gaussian", **kw)

    @classmethod
    def sequential(cls, b, l, n, **kw) -> "SO3part":
        return cls.filled(b, l, n, "sequential", **kw)

    @classmethod
    def identity(cls, b, l, n=None, **kw) -> "SO3part":
        """Identity matrix on (m + l, fragment); ``n`` defaults to 2l+1 (a Fourier component)."""
        return cls.filled(b, l, 2 * l + 1 if n is None else n, "identity", **kw)

    # ----------------------------------------------------------------- properties
    @property
    def l(self) -> int:
        return (self.data.shape[-2] - 1) // 2

    @property
    def n(self) -> int:
        return self.data.shape[-1]

    @property
    def batch(self) -> tuple[int, ...]:
        return tuple(self.data.shape[:-2])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def requires_grad(self) -> bool:
        return self.data.requires_grad

    def torch(self) -> torch.Tensor:
        return self.data

    def _new(self, data: torch.Tensor) -> "SO3part":
        return SO3part(data, self.basis)

    # ----------------------------------------------------------------- transport
    def to(self, *args, **kwargs) -> "SO3part":
        """As ``torch.Tensor.to`` (a dtype, a device, both, a tensor or another SO3part to match,
        keywords); the dtype must suit the basis."""
        args = tuple(a.data if isinstance(a, SO3part) else a for a in args)
        check_target_dtype(args, kwargs, self.basis)
        t = self.data.to(*args, **kwargs)
        return self if t is self.data else self._new(t)

    def to_basis(self, basis: str, dtype: torch.dtype | None = None) -> "SO3part":
        """The same part in ``basis`` ("complex" or "real"; :mod:`so3net.basis`): complex -> real
        gives ``Q_l F``, real -> complex ``Q_l^† F`` (complex dtype). ``dtype`` may ask for a real
        dtype when going to the real basis; that checks the imaginary part is round-off (F is the
        complex form of real data) and raises otherwise. Commutes with ``rotate``."""
        check_basis(basis)
        if dtype is not None:
            resolve_dtype(dtype, basis)
        return SO3part(convert_part(self.data, self.l, self.basis, basis, dtype), basis)

    def detach(self) -> "SO3part":
        return self._new(self.data.detach())

    def clone(self) -> "SO3part":
        return self._new(self.data.clone())

    def requires_grad_(self, flag: bool = True) -> "SO3part":
        self.data.requires_grad_(flag)
        return self

    @property
    def grad(self) -> "SO3part | None":
        """``data.grad`` as an SO3part (``None`` before a backward pass reaches it)."""
        g = self.data.grad
        return None if g is None else self._new(g)

    # ----------------------------------------------------------------- arithmetic
    def _check_other(self, other, op: str) -> "SO3part":
        if not isinstance(other, SO3part):
            raise TypeError(f"{op} expects two SO3parts, got SO3part and {type(other).__name__}")
        if other.l != self.l or other.n != self.n:
            raise ValueError(f"{op} needs parts of one degree and fragment count; got (l={self.l}, n={self.n}) "
                             f"and (l={other.l}, n={other.n})")
        check_same_storage(self, other, op)
        return other

    def __add__(self, other) -> "SO3part":
        return self._new(self.data + self._check_other(other, "+").data)

    def __sub__(self, other) -> "SO3part":
        return self._new(self.data - self._check_other(other, "-").data)

    def __neg__(self) -> "SO3part":
        return self._new(-self.data)

    def __mul__(self, s) -> "SO3part":
        """Scale each sample by a number, ``Rscalar``/``Cscalar`` or a tensor of batch shape."""
        if isinstance(s, SO3part):
            raise TypeError("SO3part * SO3part is not defined; use CGproduct or DiagCGproduct")
        return self._new(self.data * scalar_factor(s, self.batch, self.dtype, self.device))

    __rmul__ = __mul__

    def __truediv__(self, s) -> "SO3part":
        return self._new(self.data / scalar_factor(s, self.batch, self.dtype, self.device))

    def __matmul__(self, W: torch.Tensor) -> "SO3part":
        """Mix fragments: ``(b..., 2l+1, n_in) @ W (n_in, n_out)`` (the linear part of a layer)."""
        return self._new(self.data @ check_weight(W, self.l, self.n, self.dtype, self.device))

    mix = __matmul__

    def conj(self) -> "SO3part":
        """Elementwise complex conjugate (the identity on real data)."""
        return self._new(self.data.conj().resolve_conj() if self.data.is_complex() else self.data)

    def fragments(self, index) -> "SO3part":
        """Select fragments with a slice, an int list or an index tensor (an int keeps the axis)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return self._new(self.data[..., index])

    def oplus(self, *others: "SO3part") -> "SO3part":
        """Direct sum: concatenate the fragments of parts of the same degree."""
        for o in others:
            if not isinstance(o, SO3part) or o.l != self.l:
                got = f"l={o.l}" if isinstance(o, SO3part) else type(o).__name__
                raise ValueError(f"oplus needs SO3parts of degree l={self.l}, got {got}")
            check_same_storage(self, o, "oplus")
        parts, batch = [self.data] + [o.data for o in others], self.batch
        for o in others:
            batch = broadcast_batch(batch, o.batch, "oplus")
        return self._new(torch.cat([p.expand(*batch, *p.shape[-2:]) for p in parts], -1))

    def inp(self, other: "SO3part") -> torch.Tensor:
        """Per-fragment inner product ``sum_m conj(self[m, i]) other[m, i]``, shape ``(b..., n)``."""
        other = self._check_other(other, "inp")
        return (self.data.conj() * other.data).sum(-2)

    def norm(self) -> torch.Tensor:
        """Per-fragment Euclidean norm ``sqrt(sum_m |F[m, i]|^2)``, real, shape ``(b..., n)``."""
        return torch.linalg.vector_norm(self.data, dim=-2)

    # ----------------------------------------------------------------- group action
    def rotate(self, R: torch.Tensor) -> "SO3part":
        """``D^l(R) F`` for rotation matrices ``R (r..., 3, 3)`` (r... broadcasts with b...)."""
        R = check_rotation(R, self.batch)
        return self._new(rotation_block(self.l, R, self.basis, self.dtype, self.device) @ self.data)

    def apply(self, D: torch.Tensor) -> "SO3part":
        """``D F`` for given matrices ``D (..., 2l+1, 2l+1)`` (e.g. a Wigner D in this part's basis)."""
        D = check_block(D, self.l)
        if D.is_complex() and not self.dtype.is_complex:
            raise TypeError(f"apply: complex matrices cannot act on real data ({self.dtype})")
        return self._new(D.to(device=self.device, dtype=self.dtype) @ self.data)

    # ----------------------------------------------------------------- products (see products.py)
    def CGproduct(self, other, maxl=None, l=None, normalized=False):
        from .products import CGproduct
        return CGproduct(self, other, maxl=maxl, l=l, normalized=normalized)

    def DiagCGproduct(self, other, maxl=None, l=None, normalized=False):
        from .products import DiagCGproduct
        return DiagCGproduct(self, other, maxl=maxl, l=l, normalized=normalized)

    def CGsquare(self, maxl=None, l=None, normalized=False):
        from .products import CGsquare
        return CGsquare(self, maxl=maxl, l=l, normalized=normalized)

    # ----------------------------------------------------------------- printing
    def __str__(self) -> str:
        return format_samples(self.batch, lambda i: part_block(self.l, self.data[i]))

    def __repr__(self) -> str:
        return (f"SO3part(l={self.l}, n={self.n}, batch={self.batch}, dtype={dtype_name(self.dtype)}, "
                f"basis={self.basis}, device={self.device})")


def check_weight(W, l: int, n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """A mixing matrix ``(..., n, n_out)`` for part l, in the data's dtype (real weights allowed)."""
    if not isinstance(W, torch.Tensor) or W.dim() < 2 or W.shape[-2] != n:
        shape = tuple(W.shape) if isinstance(W, torch.Tensor) else type(W).__name__
        raise ValueError(f"weights for l={l} must be a tensor of shape (..., {n}, n_out) to mix {n} fragments, "
                         f"got {shape}")
    real = dtype.to_real() if dtype.is_complex else dtype
    if W.dtype not in (dtype, real):
        raise TypeError(f"weights for l={l} have dtype {W.dtype}; expected {dtype} or {real} to match the data")
    if W.device != device:
        raise ValueError(f"weights for l={l} are on {W.device} but the data is on {device}")
    return W.to(dtype)
