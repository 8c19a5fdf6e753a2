"""``SO3vec``: an SO(3)-covariant vector, the parts l = 0..L of one common batch shape.

``v.parts`` is a dict ``l -> tensor (b..., 2l+1, tau[l])`` with every l = 0..L present (a part with
zero fragments is stored as an empty tensor); ``v.tau`` is its ``SO3type``. Layout, dtypes and
the group action are those of :class:`so3net.types.part.SO3part`.

Packed layout (shared with the kernels, :mod:`so3net.plan`): ``v.packed()`` is ``(b..., dim)``
with part l flattened row-major from ``(2l+1, tau[l])`` at offset ``sum_{l'<l} (2l'+1) tau[l']``.

Constructors::

    SO3vec((2, 3, 1), fill="gaussian")      # the talk's SO3vec<float> v(tau, fill::gaussian)
    SO3vec.randn(b, tau)                     # also zeros, ones, sequential, identity
    SO3vec({0: p0, 1: p1})                   # from parts (tensors or SO3parts; missing l are empty)
    SO3vec.from_packed(t, tau)               # from (b..., dim)
"""
from __future__ import annotations

import numbers

import torch

from ._checks import (batch_tuple, broadcast_batch, check_basis, check_part_tensor, check_same_storage,
                      fill_part, resolve_dtype)
from ._basis import convert_part
from ._format import dtype_name, format_samples, part_block
from .part import SO3part, check_weight
from .rotation import check_block, check_rotation, rotation_block
from .scalars import scalar_factor
from .sotype import SO3type

__all__ = ["SO3vec"]


class SO3vec:
    """Parts l = 0..L of one batch shape, dtype, device and basis (see the module docstring)."""

    __slots__ = ("parts", "basis", "_source")

    def __init__(self, arg, fill: str | None = None, *, batch=None, dtype=None, device=None,
                 basis: str | None = None, generator: torch.Generator | None = None):
        self._source = None               # (packed tensor, its part views) when built from_packed
        if isinstance(arg, SO3vec):
            arg, basis = dict(arg.parts), basis or arg.basis
        if isinstance(arg, dict) or (isinstance(arg, (list, tuple)) and arg and
                                     all(isinstance(p, (torch.Tensor, SO3part)) for p in arg)):
            if fill is not None:
                raise ValueError("fill applies to SO3vec(tau, fill=...); parts were given")
            self.parts, self.basis = _from_parts(arg, basis)
            return
        basis = check_basis(basis or "complex")
        tau, dtype = SO3type(arg), resolve_dtype(dtype, basis)
        b = batch_tuple(batch)
        self.parts = {l: fill_part(fill or "zero", b, l, n, dtype, device, generator) for l, n in enumerate(tau)}
        self.basis = basis

    # ----------------------------------------------------------------- constructors
    @classmethod
    def filled(cls, b, tau, fill: str = "zero", **kw) -> "SO3vec":
        """Batch ``b`` (None, int or tuple) and type ``tau``, filled as GElib's ``fill::...``."""
        return cls(tau, fill, batch=b, **kw)

    @classmethod
    def zeros(cls, b, tau, **kw) -> "SO3vec":
        return cls(tau, "zero", batch=b, **kw)

    @classmethod
    def ones(cls, b, tau, **kw) -> "SO3vec":
        return cls(tau, "ones", batch=b, **kw)

    @classmethod
    def randn(cls, b, tau, **kw) -> "SO3vec":
        return cls(tau, "gaussian", batch=b, **kw)

    @classmethod
    def sequential(cls, b, tau, **kw) -> "SO3vec":
        return cls(tau, "sequential", batch=b, **kw)

    @classmethod
    def identity(cls, b, tau, **kw) -> "SO3vec":
        return cls(tau, "identity", batch=b, **kw)

    @classmethod
    def from_packed(cls, t: torch.Tensor, tau, basis: str = "complex") -> "SO3vec":
        """From the packed layout ``(b..., dim)`` (see the module docstring). The parts are views of
        ``t`` when it is contiguous, and the vector keeps ``t`` for :meth:`packed`."""
        tau = SO3type(tau)
        if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[-1] != tau.dim:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"packed SO3vec of type {tau} expects shape (b..., {tau.dim}), got {shape}")
        batch, parts, start = tuple(t.shape[:-1]), {}, 0
        for l, n in enumerate(tau):
            size = (2 * l + 1) * n
            parts[l] = t[..., start:start + size].reshape(*batch, 2 * l + 1, n)
            start += size
        vec = cls(parts, basis=basis)
        vec._keep_source(t)
        return vec

    @classmethod
    def _from_trusted(cls, parts: dict, basis: str, source: torch.Tensor | None = None) -> "SO3vec":
        """Internal constructor for parts valid by construction (l = 0..L in order, one batch shape,
        dtype and device, a checked basis): no per-part checks. ``source``: the packed tensor the
        parts are views of, kept for :meth:`packed` as :meth:`from_packed` does."""
        vec = cls.__new__(cls)
        vec.parts, vec.basis, vec._source = parts, basis, None
        if source is not None:
            vec._keep_source(source)
        return vec

    def _keep_source(self, t: torch.Tensor) -> None:
        """Remember ``t`` for :meth:`packed` when it is contiguous (then the parts are its views)."""
        if t.is_contiguous():
            parts = tuple(self.parts.values())
            self._source = (t, parts, tuple(p.data_ptr() for p in parts))

    # ----------------------------------------------------------------- properties
    @property
    def tau(self) -> SO3type:
        return SO3type(p.shape[-1] for p in self.parts.values())

    @property
    def maxl(self) -> int:
        return len(self.parts) - 1

    @property
    def batch(self) -> tuple[int, ...]:
        return tuple(self.parts[0].shape[:-2])

    @property
    def dtype(self) -> torch.dtype:
        return self.parts[0].dtype

    @property
    def device(self) -> torch.device:
        return self.parts[0].device

    @property
    def requires_grad(self) -> bool:
        return any(p.requires_grad for p in self.parts.values())

    def __getitem__(self, l: int) -> SO3part:
        """Part of degree ``l`` as an ``SO3part`` (a view of the same tensor)."""
        if not isinstance(l, numbers.Integral) or not 0 <= l <= self.maxl:
            raise IndexError(f"SO3vec of type {self.tau} has parts l = 0..{self.maxl}, got {l!r}")
        return SO3part(self.parts[int(l)], self.basis)

    def __len__(self) -> int:
        return len(self.parts)

    def packed(self) -> torch.Tensor:
        """The packed layout ``(b..., dim)``. Like ``torch.reshape`` it may share memory with the
        parts: a vector made by :meth:`from_packed` (every product's output) whose parts are still
        those views, with their storage and ``requires_grad``, returns that tensor (no copy, and no
        full-size zero gradient per part in backward); otherwise the parts are concatenated.
        Clone the result before modifying it in place."""
        if self._source is not None and self._source_is_current():
            return self._source[0]
        return torch.cat([p.reshape(*self.batch, p.shape[-2] * p.shape[-1]) for p in self.parts.values()], -1)

    def _source_is_current(self) -> bool:
        source, views, pointers = self._source
        parts = tuple(self.parts.values())
        return (len(views) == len(parts) and all(a is b for a, b in zip(views, parts))
                and all(p.data_ptr() == q and p.requires_grad == source.requires_grad
                        for p, q in zip(parts, pointers)))

    def _map(self, fn) -> "SO3vec":
        return SO3vec({l: fn(l, p) for l, p in self.parts.items()}, basis=self.basis)

    # ----------------------------------------------------------------- transport
    def to(self, device=None, dtype=None) -> "SO3vec":
        if dtype is not None:
            resolve_dtype(dtype, self.basis)
        return self._map(lambda l, p: p.to(device=device, dtype=dtype))

    def to_basis(self, basis: str, dtype: torch.dtype | None = None) -> "SO3vec":
        """The same vector in ``basis`` ("complex" or "real"), part by part as
        :meth:`SO3part.to_basis` (complex -> real ``Q_l F^l``, real -> complex ``Q_l^† F^l``)."""
        check_basis(basis)
        if dtype is not None:
            resolve_dtype(dtype, basis)
        return SO3vec({l: convert_part(p, l, self.basis, basis, dtype) for l, p in self.parts.items()},
                      basis=basis)

    def detach(self) -> "SO3vec":
        return self._map(lambda l, p: p.detach())

    def clone(self) -> "SO3vec":
        return self._map(lambda l, p: p.clone())

    def requires_grad_(self, flag: bool = True) -> "SO3vec":
        for p in self.parts.values():
            p.requires_grad_(flag)
        return self

    # ----------------------------------------------------------------- arithmetic
    def _check_other(self, other, op: str) -> "SO3vec":
        if not isinstance(other, SO3vec):
            raise TypeError(f"{op} expects two SO3vecs, got SO3vec and {type(other).__name__}")
        if other.tau != self.tau:
            raise ValueError(f"{op} needs SO3vecs of one type; got {self.tau} and {other.tau}")
        check_same_storage(self, other, op)
        broadcast_batch(self.batch, other.batch, op)
        return other

    def __add__(self, other) -> "SO3vec":
        other = self._check_other(other, "+")
        return self._map(lambda l, p: p + other.parts[l])

    def __sub__(self, other) -> "SO3vec":
        other = self._check_other(other, "-")
        return self._map(lambda l, p: p - other.parts[l])

    def __neg__(self) -> "SO3vec":
        return self._map(lambda l, p: -p)

    def __mul__(self, s) -> "SO3vec":
        """``v * W`` with W a dict ``l -> (n_in, n_out)`` or a list by l: mix fragments per l (the
        linear part of a layer). ``v * s`` with a number, ``Rscalar``/``Cscalar`` or a tensor of batch
        shape: scale every sample."""
        if isinstance(s, (dict, list, tuple)):
            return self.mix(s)
        if isinstance(s, SO3vec):
            raise TypeError("SO3vec * SO3vec is not defined; use CGproduct, DiagCGproduct or CGsquare")
        factor = scalar_factor(s, self.batch, self.dtype, self.device)
        return self._map(lambda l, p: p * factor)

    def __rmul__(self, s) -> "SO3vec":
        if isinstance(s, (dict, list, tuple)):
            raise TypeError("weights multiply from the right: write v * W")
        return self.__mul__(s)

    def __truediv__(self, s) -> "SO3vec":
        factor = scalar_factor(s, self.batch, self.dtype, self.device)
        return self._map(lambda l, p: p / factor)

    def mix(self, W) -> "SO3vec":
        """Per-l fragment mixing ``F^l @ W[l]``, W a dict or a list indexed by l with a matrix
        ``(..., tau[l], n_out)`` for every present part; absent parts (tau[l] = 0) may have no entry
        (or None) and stay absent."""
        keys = list(W) if isinstance(W, dict) else list(range(len(W)))
        extra = [l for l in keys if l not in self.parts]
        if extra:
            raise ValueError(f"weights given for l={extra}, beyond the parts l = 0..{self.maxl} of type {self.tau}")
        missing = [l for l, p in self.parts.items() if p.shape[-1] and (l not in keys or W[l] is None)]
        if missing:
            raise ValueError(f"weights must cover every present part of type {self.tau}; missing l={missing}")

        def mixed(l, p):
            if l not in keys or W[l] is None:
                return p
            return p @ check_weight(W[l], l, p.shape[-1], self.dtype, self.device)
        return self._map(mixed)

    __matmul__ = mix

    def conj(self) -> "SO3vec":
        """Elementwise complex conjugate of every part (the identity on real data)."""
        return self._map(lambda l, p: p.conj().resolve_conj() if p.is_complex() else p)

    def fragments(self, index: dict) -> "SO3vec":
        """Select fragments per l: ``index`` maps l to a slice, an int list or an index tensor; parts
        not named keep all their fragments."""
        bad = [l for l in index if l not in self.parts]
        if bad:
            raise IndexError(f"fragments: SO3vec of type {self.tau} has parts l = 0..{self.maxl}, got l={bad}")
        return self._map(lambda l, p: self[l].fragments(index[l]).data if l in index else p)

    def oplus(self, *others: "SO3vec") -> "SO3vec":
        """Direct sum: fragments concatenated l by l (type ``tau1 + tau2``)."""
        return cat([self, *others])

    def inp(self, other: "SO3vec") -> dict[int, torch.Tensor]:
        """Per-fragment inner products ``l -> (b..., tau[l])``, ``sum_m conj(self) other``."""
        other = self._check_other(other, "inp")
        return {l: self[l].inp(other[l]) for l in self.parts}

    def norm(self) -> dict[int, torch.Tensor]:
        """Per-fragment norms ``l -> (b..., tau[l])`` (real)."""
        return {l: self[l].norm() for l in self.parts}

    # ----------------------------------------------------------------- group action
    def rotate(self, R: torch.Tensor) -> "SO3vec":
        """``F^l -> D^l(R) F^l`` for every l; ``R (r..., 3, 3)`` broadcasts with the batch."""
        R = check_rotation(R, self.batch)
        return self._map(lambda l, p: rotation_block(l, R, self.basis, self.dtype, self.device) @ p)

    def apply(self, D) -> "SO3vec":
        """``F^l -> D[l] F^l`` with ``D`` a dict or list of ``(..., 2l+1, 2l+1)`` matrices, all l."""
        missing = [l for l in self.parts if not _has(D, l)]
        if missing:
            raise ValueError(f"apply needs a matrix for every l = 0..{self.maxl}; missing l={missing}")
        return self._map(lambda l, p: self[l].apply(check_block(D[l], l)).data)

    # ----------------------------------------------------------------- products (see products.py)
    def CGproduct(self, other, maxl=None, normalized=False) -> "SO3vec":
        from .products import CGproduct
        return CGproduct(self, other, maxl=maxl, normalized=normalized)

    def DiagCGproduct(self, other, maxl=None, normalized=False) -> "SO3vec":
        from .products import DiagCGproduct
        return DiagCGproduct(self, other, maxl=maxl, normalized=normalized)

    def CGsquare(self, maxl=None, normalized=False) -> "SO3vec":
        from .products import CGsquare
        return CGsquare(self, maxl=maxl, normalized=normalized)

    # ----------------------------------------------------------------- printing
    def __str__(self) -> str:
        def body(i):
            return "\n".join(part_block(l, p[i]) for l, p in self.parts.items() if p.shape[-1] > 0)
        return format_samples(self.batch, body)

    def __repr__(self) -> str:
        return (f"SO3vec(tau={self.tau}, batch={self.batch}, dtype={dtype_name(self.dtype)}, "
                f"basis={self.basis}, device={self.device})")


def cat(vecs) -> "SO3vec | SO3part":
    """Direct sum ⊕ of SO3vecs (or of SO3parts of one degree): fragments concatenated l by l.

    The output type is the sum of the types (``SO3type.__add__``); batch shapes broadcast.
    """
    vecs = list(vecs)
    if not vecs:
        raise ValueError("cat needs at least one SO3vec or SO3part")
    if all(isinstance(v, SO3part) for v in vecs):
        return vecs[0].oplus(*vecs[1:])
    if not all(isinstance(v, SO3vec) for v in vecs):
        raise TypeError(f"cat expects SO3vecs (or SO3parts), got {[type(v).__name__ for v in vecs]}")
    first = vecs[0]
    for v in vecs[1:]:
        check_same_storage(first, v, "cat")
    batch = ()
    for v in vecs:
        batch = broadcast_batch(batch, v.batch, "cat")
    parts = {}
    for l in range(max(v.maxl for v in vecs) + 1):
        pieces = [v.parts[l] for v in vecs if l in v.parts]
        parts[l] = torch.cat([p.expand(*batch, *p.shape[-2:]) for p in pieces], -1)
    return SO3vec(parts, basis=first.basis)


oplus = cat


def _has(container, l: int) -> bool:
    if isinstance(container, dict):
        return l in container
    return 0 <= l < len(container)


def _from_parts(arg, basis: str | None) -> tuple[dict[int, torch.Tensor], str]:
    """Validate parts given as a dict ``l -> tensor/SO3part`` or a list by l; fill missing l."""
    items = dict(arg) if isinstance(arg, dict) else dict(enumerate(arg))
    if not items:
        raise ValueError("SO3vec needs at least one part")
    bases = {p.basis for p in items.values() if isinstance(p, SO3part)}
    if basis is None:
        basis = bases.pop() if len(bases) == 1 else "complex"
    if bases - {basis}:
        raise ValueError(f"parts are in the {sorted(bases)} basis but the SO3vec is asked to be {basis!r}")
    tensors = {}
    for l, p in items.items():
        if not isinstance(l, numbers.Integral) or l < 0:
            raise ValueError(f"part keys must be degrees l >= 0, got {l!r}")
        tensor = p.data if isinstance(p, SO3part) else p
        check_part_tensor(tensor, int(l), basis, what=f"SO3vec part l={l}")
        tensors[int(l)] = tensor
    first = tensors[min(tensors)]
    for l, t in tensors.items():
        if t.shape[:-2] != first.shape[:-2]:
            raise ValueError(f"all parts need one batch shape; l={min(tensors)} has {tuple(first.shape[:-2])}, "
                             f"l={l} has {tuple(t.shape[:-2])}")
        check_same_storage(first, t, f"SO3vec part l={l}")
    batch = first.shape[:-2]
    return {l: tensors[l] if l in tensors else first.new_zeros(*batch, 2 * l + 1, 0)
            for l in range(max(tensors) + 1)}, basis
