"""Validation and construction helpers shared by the SO(3) types (private).

Every check raises with a message that says what was given and what was expected.
"""
from __future__ import annotations

import numbers

import torch

BASES = ("complex", "real")
FILLS = ("zero", "ones", "gaussian", "sequential", "identity")


def check_basis(basis: str) -> str:
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    return basis


def resolve_dtype(dtype, basis: str) -> torch.dtype:
    """The storage dtype: complex64 by default (float32 in the real basis)."""
    check_basis(basis)
    if dtype is None:
        return torch.complex64 if basis == "complex" else torch.float32
    check_dtype(dtype, basis)
    return dtype


def check_dtype(dtype: torch.dtype, basis: str) -> None:
    allowed = (torch.complex64, torch.complex128)
    if basis == "real":
        allowed = (torch.float32, torch.float64) + allowed
    if dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        hint = " (use basis='real' for real data)" if dtype.is_floating_point and basis == "complex" else ""
        raise TypeError(f"the {basis} basis stores {names}; got {dtype}{hint}")


def check_degree(l, name: str = "l") -> int:
    if not isinstance(l, numbers.Integral) or isinstance(l, bool) or l < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {l!r}")
    return int(l)


def batch_tuple(b) -> tuple[int, ...]:
    """Batch shape from ``None``/``()`` (no batch), an int, or a sequence of ints."""
    if b is None:
        return ()
    if isinstance(b, numbers.Integral) and not isinstance(b, bool):
        b = (b,)
    try:
        shape = tuple(b)
    except TypeError:
        raise TypeError(f"batch must be None, an int or a tuple of ints, got {b!r}") from None
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ValueError(f"batch dimensions must be non-negative ints, got {b!r}")
    return tuple(int(s) for s in shape)


def check_part_tensor(t, l: int | None, basis: str, what: str = "SO3part") -> int:
    """Validate a part tensor ``(b..., 2l+1, n)``; returns its degree l."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} expects a torch.Tensor of shape (b..., 2l+1, n), got {type(t).__name__}")
    if t.dim() < 2 or t.shape[-2] % 2 == 0:
        expected = "(b..., 2l+1, n)" if l is None else f"(b..., {2 * l + 1}, n) for l={l}"
        raise ValueError(f"{what} expects shape {expected} with an odd second-to-last dimension 2l+1, "
                         f"got {tuple(t.shape)}")
    degree = (t.shape[-2] - 1) // 2
    if l is not None and degree != l:
        raise ValueError(f"{what} expects shape (b..., 2l+1, n) with 2l+1 = {2 * l + 1} for l={l}, "
                         f"got {tuple(t.shape)}")
    check_dtype(t.dtype, basis)
    return degree


def check_same_storage(a, b, op: str) -> None:
    """Two operands (tensors or types with ``basis``/``dtype``/``device``) must agree."""
    basis_a, basis_b = getattr(a, "basis", None), getattr(b, "basis", None)
    if basis_a is not None and basis_b is not None and basis_a != basis_b:
        raise ValueError(f"{op}: operands are in different bases ({basis_a} and {basis_b}); "
                         f"convert one first")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: operands have different dtypes ({a.dtype} and {b.dtype}); "
                        f"expected one dtype, convert with .to(dtype=...)")
    if a.device != b.device:
        raise ValueError(f"{op}: operands are on different devices ({a.device} and {b.device}); "
                         f"expected one device, move with .to(device)")


def broadcast_batch(s1: tuple[int, ...], s2: tuple[int, ...], op: str) -> tuple[int, ...]:
    """Broadcast two batch shapes by torch's rules (plain Python: torch's own error path is slow)."""
    n = max(len(s1), len(s2))
    a, b = (1,) * (n - len(s1)) + tuple(s1), (1,) * (n - len(s2)) + tuple(s2)
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        raise ValueError(f"{op}: batch shapes {tuple(s1)} and {tuple(s2)} do not broadcast")
    return tuple(y if x == 1 else x for x, y in zip(a, b))


def fill_part(fill: str, batch: tuple[int, ...], l: int, n: int, dtype: torch.dtype, device,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A part tensor ``(batch..., 2l+1, n)`` filled as GElib's ``fill::...``.

    ``gaussian``: torch.randn (complex: real and imaginary parts each of variance 1/2);
    ``sequential``: 0, 1, 2, ... in row-major order over the whole part tensor;
    ``identity``: 1 where m + l equals the fragment index (the identity matrix for n = 2l+1).
    """
    shape = batch + (2 * l + 1, n)
    if fill == "zero":
        return torch.zeros(shape, dtype=dtype, device=device)
    if fill == "ones":
        return torch.ones(shape, dtype=dtype, device=device)
    if fill == "gaussian":
        return torch.randn(shape, dtype=dtype, device=device, generator=generator)
    if fill == "sequential":
        count = 1
        for s in shape:
            count *= s
        return torch.arange(count, device=device).reshape(shape).to(dtype)
    if fill == "identity":
        return torch.eye(2 * l + 1, n, dtype=dtype, device=device).expand(shape).clone()
    raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")


def check_target_dtype(args: tuple, kwargs: dict, basis: str) -> None:
    """The dtype a ``Tensor.to``-style call asks for must suit ``basis`` (checked before casting)."""
    dtype = kwargs.get("dtype")
    for a in args:
        if isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, torch.Tensor):
            dtype = a.dtype
    if dtype is not None:
        check_dtype(dtype, basis)
