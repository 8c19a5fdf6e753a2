"""``SO3vec``: an SO(3)-covariant vector, the parts l = 0..L of one common batch shape.

Storage: one packed tensor ``v.packed()`` of shape ``(b..., dim)`` (shared with the kernels,
:mod:`so3net.plan`): part l flattened row-major from ``(2l+1, tau[l])`` at offset
``sum_{l'<l} (2l'+1) tau[l']``. ``v.parts`` maps every l = 0..L to a view ``(b..., 2l+1, tau[l])``
of it (a part with zero fragments is an empty view), all made by one split node: per-part
code reads the packed storage without copying, and the backward of any mix of per-part uses writes
the packed gradient once. Products, arithmetic, ``rotate`` and the Fourier transforms read and
write packed tensors. ``v.tau`` is its ``SO3type``. Layout, dtypes and the group action are those
of :class:`so3net.types.part.SO3part`.

Constructors::

    SO3vec((2, 3, 1), fill="gaussian")      # the talk's SO3vec<float> v(tau, fill::gaussian)
    SO3vec.randn(b, tau)                     # also zeros, ones, sequential, identity
    SO3vec({0: p0, 1: p1})                   # from parts (tensors or SO3parts; missing l are empty)
    SO3vec.from_packed(t, tau)               # from (b..., dim)
"""
from __future__ import annotations

import numbers
import weakref

import torch

from ._checks import (batch_tuple, broadcast_batch, check_basis, check_dtype, check_part_tensor,
                      check_same_storage, check_target_dtype, fill_part, resolve_dtype)
from ._basis import convert_part
from ._format import dtype_name, format_samples, part_block
from ._split import split_packed
from .part import SO3part, check_weight
from .rotation import check_block, check_rotation, rotation_block
from .scalars import scalar_factor
from .sotype import SO3type

__all__ = ["SO3vec", "PartViews"]


class PartViews(dict):
    """``SO3vec.parts``: ``l -> (b..., 2l+1, tau[l])``, views of the vector's packed tensor made by one
    split (so the backward of any mix of per-part uses writes the packed gradient once). In-place
    changes of a part change the vector, except where the vector records gradients: torch forbids
    in-place changes of the outputs of a multi-output view there, as for ``torch.split`` (use
    out-of-place ops, or assign). Assigning ``v.parts[l] = t`` packs the vector anew with ``t`` as
    part l (a copy). Parts cannot be removed or added."""

    __slots__ = ("_owner",)            # a weak reference: no cycle, so a vector is freed as soon as unused

    def __setitem__(self, l, t):
        owner = self._owner()
        if owner is None:
            raise RuntimeError("these parts belong to an SO3vec that no longer exists; assign to a live vector's parts")
        owner._set_part(l, t)

    def _refuse(self, *args, **kwargs):
        raise TypeError("SO3vec parts cover l = 0..L and cannot be removed or added in bulk; "
                        "assign one part (v.parts[l] = t) or build a new SO3vec")

    __delitem__ = pop = popitem = clear = update = setdefault = __ior__ = _refuse

    def __reduce__(self):
        return dict, (dict(self),)


class SO3vec:
    """Parts l = 0..L of one batch shape, dtype, device and basis, stored as one packed tensor
    (see the module docstring)."""

    __slots__ = ("_packed", "_tau", "_parts", "basis", "__weakref__")

    def __init__(self, arg, fill: str | None = None, *, batch=None, dtype=None, device=None,
                 basis: str | None = None, generator: torch.Generator | None = None):
        if isinstance(arg, SO3vec):
            if fill is not None:
                raise ValueError("fill applies to SO3vec(tau, fill=...); an SO3vec was given")
            if basis is not None and basis != arg.basis:
                raise ValueError(f"SO3vec(v, basis={basis!r}) of a vector in the {arg.basis} basis: "
                                 f"use v.to_basis({basis!r}) to convert")
            extra = [k for k, v in (("batch", batch), ("dtype", dtype), ("device", device),
                                    ("generator", generator)) if v is not None]
            if extra:
                raise ValueError(f"SO3vec(v) of an SO3vec takes no {', '.join(extra)}: it shares v's storage; "
                                 f"use v.to(...) to change dtype or device")
            self._set(arg.packed(), arg._tau, arg.basis)
            return
        if isinstance(arg, dict) or (isinstance(arg, (list, tuple)) and arg and
                                     all(isinstance(p, (torch.Tensor, SO3part)) for p in arg)):
            if fill is not None:
                raise ValueError("fill applies to SO3vec(tau, fill=...); parts were given")
            parts, basis = _from_parts(arg, basis)
            self._set(_pack(parts), SO3type(p.shape[-1] for p in parts.values()), basis)
            return
        basis = check_basis(basis or "complex")
        tau, dtype = SO3type(arg), resolve_dtype(dtype, basis)
        b = batch_tuple(batch)
        parts = {l: fill_part(fill or "zero", b, l, n, dtype, device, generator) for l, n in enumerate(tau)}
        self._set(_pack(parts, b), tau, basis)

    def _set(self, packed: torch.Tensor, tau: SO3type, basis: str) -> None:
        """Store ``packed (b..., tau.dim)``; the part views are made on first use of :attr:`parts`."""
        self._packed, self._tau, self.basis, self._parts = packed, tau, basis, None

    def _views(self) -> PartViews:
        """The part views, made once (one split) so that every per-part use shares one autograd node.
        A packed tensor that requires gradients is split with gradients recorded even when the first
        use is under ``torch.no_grad()`` or inference mode (printing, logging a norm), so later
        per-part losses still reach it."""
        current = self._parts
        if current is None or (self._packed.requires_grad and current[0].grad_fn is None):
            sizes = [(2 * l + 1) * n for l, n in enumerate(self._tau)]      # (or made before requires_grad)
            if self._packed.requires_grad and not torch.is_grad_enabled():
                with torch.inference_mode(False), torch.enable_grad():
                    pieces = split_packed(self._packed, sizes)
            else:
                pieces = split_packed(self._packed, sizes)
            views = PartViews((l, piece.unflatten(-1, (2 * l + 1, n)))
                              for (l, n), piece in zip(enumerate(self._tau), pieces))
            views._owner = weakref.ref(self)
            if self._parts is current:     # another thread may have made them meanwhile: keep those
                self._parts = views
        return self._parts

    def _has_leaf_parts(self) -> bool:
        """Whether :meth:`requires_grad_` made the part views the leaves (see :meth:`packed`)."""
        parts = self._parts
        return (parts is not None and not self._packed.requires_grad
                and any(p.requires_grad for p in parts.values()))

    # ----------------------------------------------------------------- copying and pickling
    def __getstate__(self):
        leaf = self._has_leaf_parts()
        return {"packed": self._packed.detach() if leaf else self._packed, "tau": tuple(self._tau),
                "basis": self.basis, "leaf_parts": leaf}

    def __setstate__(self, state):
        self._set(state["packed"], SO3type(state["tau"]), state["basis"])
        if state["leaf_parts"]:
            self.requires_grad_()

    def __copy__(self) -> "SO3vec":
        """A vector sharing this one's packed tensor and part views (``copy.copy``)."""
        vec = SO3vec._wrap(self._packed, self._tau, self.basis)
        if self._parts is not None:
            views = PartViews(self._parts)
            views._owner = weakref.ref(vec)
            vec._parts = views
        return vec

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
        """The vector whose packed tensor is ``t (b..., dim)`` (see the module docstring): no copy,
        the parts are views of ``t`` and ``v.packed() is t``."""
        tau = SO3type(tau)
        if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[-1] != tau.dim:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"packed SO3vec of type {tau} expects shape (b..., {tau.dim}), got {shape}")
        check_dtype(t.dtype, check_basis(basis))
        return cls._wrap(t, tau, basis)

    @classmethod
    def _wrap(cls, t: torch.Tensor, tau: SO3type, basis: str) -> "SO3vec":
        """Internal :meth:`from_packed` for arguments valid by construction (no checks)."""
        vec = cls.__new__(cls)
        vec._set(t, tau, basis)
        return vec

    def _set_part(self, l, t) -> None:
        if not isinstance(l, numbers.Integral) or not 0 <= l <= self.maxl:
            raise IndexError(f"SO3vec of type {self.tau} has parts l = 0..{self.maxl}, got {l!r}")
        parts = dict(self._views())
        parts[int(l)] = t.data if isinstance(t, SO3part) else t
        parts, basis = _from_parts(parts, self.basis)
        self._set(_pack(parts), SO3type(p.shape[-1] for p in parts.values()), basis)

    # ----------------------------------------------------------------- properties
    @property
    def parts(self) -> PartViews:
        """``l -> (b..., 2l+1, tau[l])`` for l = 0..L: views of :meth:`packed` (see :class:`PartViews`)."""
        return self._views()

    @property
    def tau(self) -> SO3type:
        return self._tau

    @property
    def maxl(self) -> int:
        return len(self._tau) - 1

    @property
    def batch(self) -> tuple[int, ...]:
        return tuple(self._packed.shape[:-1])

    @property
    def dtype(self) -> torch.dtype:
        return self._packed.dtype

    @property
    def device(self) -> torch.device:
        return self._packed.device

    @property
    def requires_grad(self) -> bool:
        t = self._packed
        return t.requires_grad or (self._parts is not None and any(p.requires_grad for p in self._parts.values()))

    @property
    def grad(self) -> "SO3vec | None":
        """The gradient accumulated by ``backward()`` in a vector made ``requires_grad_()`` (an SO3vec
        of the same type; when its parts are the leaves, ``v.parts[l].grad`` holds part l of it), or
        ``None`` (no backward yet, or a vector computed from others, which keeps no ``.grad``)."""
        if not self._packed.is_leaf:
            return None                     # the result of differentiable operations keeps no .grad
        g = self._packed.grad
        if g is None:
            grads = [p.grad for p in self._views().values()]
            if all(p is None for p in grads):
                return None
            g = _pack({l: torch.zeros_like(p) if q is None else q
                       for (l, p), q in zip(self._views().items(), grads)}, self.batch)
        return SO3vec._wrap(g, self._tau, self.basis)

    def __getitem__(self, l: int) -> SO3part:
        """Part of degree ``l`` as an ``SO3part`` (a view of the same tensor)."""
        if not isinstance(l, numbers.Integral) or not 0 <= l <= self.maxl:
            raise IndexError(f"SO3vec of type {self.tau} has parts l = 0..{self.maxl}, got {l!r}")
        return SO3part(self._views()[int(l)], self.basis)

    def __len__(self) -> int:
        return len(self._tau)

    def packed(self) -> torch.Tensor:
        """The packed tensor ``(b..., dim)`` the vector is stored in (no copy; see the module
        docstring). Its parts are views of it, so modifying it in place modifies them.

        One exception keeps torch's leaf semantics: when parts were made leaves that require
        gradients one by one (``v.parts[l].requires_grad_()`` on a vector that did not require
        them), the result is their concatenation, so that gradients reach those parts."""
        if torch.is_grad_enabled() and self._has_leaf_parts():
            return _pack(self._parts, self.batch)
        return self._packed

    def _map(self, fn) -> "SO3vec":
        """A vector of the same basis from ``fn(l, part)`` for every l (packed anew: one copy)."""
        parts = {l: fn(l, p) for l, p in self._views().items()}
        return SO3vec._wrap(_pack(parts), SO3type(p.shape[-1] for p in parts.values()), self.basis)

    def _same(self, t: torch.Tensor) -> "SO3vec":
        """The vector of this type and basis stored in ``t`` (an elementwise function of packed())."""
        return SO3vec._wrap(t, self._tau, self.basis)

    # ----------------------------------------------------------------- transport (torch conventions)
    def to(self, *args, **kwargs) -> "SO3vec":
        """As ``torch.Tensor.to``: ``v.to(torch.complex128)``, ``v.to("cuda")``, ``v.to(device, dtype)``,
        ``v.to(other_tensor)`` (or another SO3vec/SO3part), ``v.to(device=..., dtype=...)``; the dtype
        must suit the basis (complex in the complex basis, real or complex in the real basis)."""
        args = tuple(a.packed() if isinstance(a, SO3vec) else a.data if isinstance(a, SO3part) else a
                     for a in args)
        check_target_dtype(args, kwargs, self.basis)
        t = self.packed().to(*args, **kwargs)
        return self if t is self._packed else self._same(t)

    def to_basis(self, basis: str, dtype: torch.dtype | None = None) -> "SO3vec":
        """The same vector in ``basis`` ("complex" or "real"), part by part as
        :meth:`SO3part.to_basis` (complex -> real ``Q_l F^l``, real -> complex ``Q_l^† F^l``)."""
        check_basis(basis)
        if dtype is not None:
            resolve_dtype(dtype, basis)
        parts = {l: convert_part(p, l, self.basis, basis, dtype) for l, p in self._views().items()}
        return SO3vec._wrap(_pack(parts, self.batch), self._tau, basis)

    def detach(self) -> "SO3vec":
        """As ``torch.Tensor.detach``: the same storage, no gradient history."""
        return self._same(self._packed.detach())

    def clone(self) -> "SO3vec":
        return self._same(self.packed().clone())

    def contiguous(self) -> "SO3vec":
        t = self.packed()
        c = t.contiguous()
        return self if c is self._packed else self._same(c)

    def requires_grad_(self, flag: bool = True) -> "SO3vec":
        """As ``torch.Tensor.requires_grad_``. On a vector whose packed tensor is a leaf that does not
        require gradients (one made by a constructor or ``from_packed`` of such a tensor) the parts
        become the leaves, as separate tensors are in torch: ``backward()`` fills
        ``v.parts[l].grad`` (and :attr:`grad`), ``torch.autograd.grad`` takes them as inputs, and an
        optimiser may update them in place; :meth:`packed` then concatenates them (a copy of the
        input, never of a product's output). A vector that is already the result of
        differentiable operations keeps its graph (``flag=False`` raises there, as in torch)."""
        t = self._packed
        if t.requires_grad:
            if not flag and t.grad_fn is not None:
                raise RuntimeError("requires_grad_(False) on an SO3vec computed from tensors that require "
                                   "gradients: use v.detach() instead")
            if t.grad_fn is None:
                t.requires_grad_(flag)
                self._set(t, self._tau, self.basis)
            return self
        for p in self._views().values():
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
        return self._same(self.packed() + other.packed())

    def __sub__(self, other) -> "SO3vec":
        other = self._check_other(other, "-")
        return self._same(self.packed() - other.packed())

    def __neg__(self) -> "SO3vec":
        return self._same(-self.packed())

    def __mul__(self, s) -> "SO3vec":
        """``v * W`` with W a dict ``l -> (n_in, n_out)`` or a list by l: mix fragments per l (the
        linear part of a layer). ``v * s`` with a number, ``Rscalar``/``Cscalar`` or a tensor of batch
        shape: scale every sample."""
        if isinstance(s, (dict, list, tuple)):
            return self.mix(s)
        if isinstance(s, SO3vec):
            raise TypeError("SO3vec * SO3vec is not defined; use CGproduct, DiagCGproduct or CGsquare")
        return self._same(self.packed() * _packed_factor(scalar_factor(s, self.batch, self.dtype, self.device)))

    def __rmul__(self, s) -> "SO3vec":
        if isinstance(s, (dict, list, tuple)):
            raise TypeError("weights multiply from the right: write v * W")
        return self.__mul__(s)

    def __truediv__(self, s) -> "SO3vec":
        return self._same(self.packed() / _packed_factor(scalar_factor(s, self.batch, self.dtype, self.device)))

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
        t = self.packed()
        return self._same(t.conj().resolve_conj()) if t.is_complex() else self

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
    return SO3vec._wrap(_pack(parts, batch), SO3type(p.shape[-1] for p in parts.values()), first.basis)


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


def _pack(parts: dict, batch: tuple[int, ...] | None = None) -> torch.Tensor:
    """Parts ``l -> (b..., 2l+1, n)`` (l = 0..L in order) packed into ``(b..., dim)``: one copy;
    batch shapes broadcast (to ``batch`` when given)."""
    tensors = list(parts.values())
    if batch is None:
        batch = ()
        for p in tensors:
            batch = broadcast_batch(batch, tuple(p.shape[:-2]), "SO3vec parts")
    return torch.cat([p.expand(*batch, *p.shape[-2:]).reshape(*batch, p.shape[-2] * p.shape[-1])
                      for p in tensors], -1)


def _packed_factor(factor):
    """A scalar factor shaped for parts ``(..., 1, 1)`` (or a number) reshaped for ``(..., dim)``."""
    return factor[..., 0] if isinstance(factor, torch.Tensor) else factor
