"""Exact Clebsch–Gordan coefficients ⟨l1 m1; l2 m2 | l m⟩ (Condon–Shortley phase).

Every coefficient is derived exactly from the Racah formula with Python integers: its value is
``sign * sqrt(p/q)`` with ``p/q`` an exact rational. It is converted to float64 once, correctly
rounded (50-digit decimal square root). Tables are cached in memory and on disk.

Defining identity (pinned by tests): for every rotation R,
``(D^{l1}(R) ⊗ D^{l2}(R)) C = C D^l(R)`` where ``C[m1+l1, m2+l2, m+l] = ⟨l1 m1; l2 m2 | l m⟩``,
and the coefficients are nonzero only when ``m = m1 + m2`` and the triangle rule holds.

On-disk cache: one file per pair (l1, l2) under ``$SO3NET_CACHE_DIR`` (default
``~/.cache/so3net``), in a folder versioned by ``CACHE_VERSION``. Each file carries a header
(magic, version, l1, l2, count) and a SHA-256 of its payload; a file that is truncated, corrupt,
of another version or of another pair is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
import tempfile
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["clebsch_gordan", "cg_exact", "cg_block", "cg_sparse", "cg_pair_blocks", "cache_dir",
           "clear_memory_cache", "check_lm", "CACHE_VERSION"]

CACHE_VERSION = 1
_MAGIC = b"SO3NETCG"
_HEADER = struct.Struct("<8sIIIQ32s")  # magic, version, l1, l2, count, sha256(payload)


def check_lm(l: int, m: int | None = None, name: str = "l") -> None:
    """Raise ValueError unless ``l`` is a non-negative integer and ``|m| <= l``."""
    if not isinstance(l, (int, np.integer)) or isinstance(l, bool) or l < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {l!r}")
    if m is not None:
        if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or abs(m) > l:
            raise ValueError(f"m for {name}={l} must be an integer with |m| <= {l}, got {m!r}")


@lru_cache(maxsize=None)
def _fact(n: int) -> int:
    return math.factorial(n)


def _triangle(l1: int, l2: int, l: int) -> bool:
    return abs(l1 - l2) <= l <= l1 + l2


def _cg_squared_and_sign(l1: int, m1: int, l2: int, m2: int, l: int, m: int) -> tuple[int, Fraction]:
    """Return (sign, C**2) exactly, C = ⟨l1 m1; l2 m2 | l m⟩ by the Racah formula."""
    if m != m1 + m2 or not _triangle(l1, l2, l):
        return 0, Fraction(0)
    f = _fact
    total = 0
    # sum over k of (-1)^k / (k! (l1+l2-l-k)! (l1-m1-k)! (l2+m2-k)! (l-l2+m1+k)! (l-l1-m2+k)!)
    kmin = max(0, l2 - l - m1, l1 - l + m2)
    kmax = min(l1 + l2 - l, l1 - m1, l2 + m2)
    # common denominator: scale every term by D = prod of the largest factorials
    terms = []
    for k in range(kmin, kmax + 1):
        den = f(k) * f(l1 + l2 - l - k) * f(l1 - m1 - k) * f(l2 + m2 - k) * f(l - l2 + m1 + k) * f(l - l1 - m2 + k)
        terms.append((-1 if k % 2 else 1, den))
    if not terms:
        return 0, Fraction(0)
    common = 1
    for _, den in terms:
        common = common * den // math.gcd(common, den)
    total = sum(s * (common // den) for s, den in terms)
    if total == 0:
        return 0, Fraction(0)
    pre = Fraction((2 * l + 1) * f(l1 + l2 - l) * f(l1 - l2 + l) * f(-l1 + l2 + l), f(l1 + l2 + l + 1))
    pre *= f(l + m) * f(l - m) * f(l1 - m1) * f(l1 + m1) * f(l2 - m2) * f(l2 + m2)
    sq = pre * Fraction(total * total, common * common)
    return (1 if total > 0 else -1), sq


def _to_float(sign: int, sq: Fraction) -> float:
    if sign == 0:
        return 0.0
    with localcontext() as ctx:
        ctx.prec = 50
        return sign * float((Decimal(sq.numerator) / Decimal(sq.denominator)).sqrt())


def cg_exact(l1: int, m1: int, l2: int, m2: int, l: int, m: int):
    """The coefficient as an exact sympy number ``sign * sqrt(p/q)``."""
    import sympy

    for name, (a, b) in {"l1": (l1, m1), "l2": (l2, m2), "l": (l, m)}.items():
        check_lm(a, b, name)
    sign, sq = _cg_squared_and_sign(l1, m1, l2, m2, l, m)
    return sign * sympy.sqrt(sympy.Rational(sq.numerator, sq.denominator))


def clebsch_gordan(l1: int, m1: int, l2: int, m2: int, l: int, m: int) -> float:
    """⟨l1 m1; l2 m2 | l m⟩ as a float, the exact value rounded once.

    >>> clebsch_gordan(1, 0, 1, 0, 0, 0)  # -1/sqrt(3)
    -0.5773502691896257
    """
    for name, (a, b) in {"l1": (l1, m1), "l2": (l2, m2), "l": (l, m)}.items():
        check_lm(a, b, name)
    if _triangle(l1, l2, l) and m == m1 + m2:
        return float(cg_block(l1, l2, l)[m1 + l1, m2 + l2, m + l])
    return 0.0


# ---------------------------------------------------------------- tables and caches

def cache_dir() -> Path:
    """The versioned folder of the on-disk CG cache (``$SO3NET_CACHE_DIR`` overrides)."""
    root = os.environ.get("SO3NET_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "so3net")
    return Path(root) / f"cg-v{CACHE_VERSION}"


@lru_cache(maxsize=None)
def _pair_entries(l1: int, l2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical order of the slots of all blocks of the pair (l, then m1, then m2, with
    |m1 + m2| <= l): three int arrays l, m1, m2."""
    ls, m1s, m2s = np.meshgrid(np.arange(abs(l1 - l2), l1 + l2 + 1), np.arange(-l1, l1 + 1),
                               np.arange(-l2, l2 + 1), indexing="ij")
    keep = np.abs(m1s + m2s) <= ls
    return ls[keep], m1s[keep], m2s[keep]


def _compute_pair(l1: int, l2: int) -> np.ndarray:
    return np.array([_to_float(*_cg_squared_and_sign(l1, int(m1), l2, int(m2), int(l), int(m1 + m2)))
                     for l, m1, m2 in zip(*_pair_entries(l1, l2))], dtype=np.float64)


def _pair_path(l1: int, l2: int) -> Path:
    return cache_dir() / f"{l1}_{l2}.bin"


def _expected_count(l1: int, l2: int) -> int:
    return len(_pair_entries(l1, l2)[0])


def _read_pair(l1: int, l2: int) -> np.ndarray | None:
    """Values from the disk cache, or None when the file is missing, stale or corrupt."""
    path = _pair_path(l1, l2)
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if len(raw) < _HEADER.size:
        return None
    magic, version, a, b, count, digest = _HEADER.unpack_from(raw)
    payload = raw[_HEADER.size:]
    if (magic != _MAGIC or version != CACHE_VERSION or (a, b) != (l1, l2)
            or len(payload) != 8 * count or hashlib.sha256(payload).digest() != digest):
        return None
    values = np.frombuffer(payload, dtype="<f8")
    if count != _expected_count(l1, l2):
        return None
    return values


def _write_pair(l1: int, l2: int, values: np.ndarray) -> None:
    path = _pair_path(l1, l2)
    payload = np.ascontiguousarray(values, dtype="<f8").tobytes()
    header = _HEADER.pack(_MAGIC, CACHE_VERSION, l1, l2, len(values), hashlib.sha256(payload).digest())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(header + payload)
        os.replace(tmp, path)  # atomic: readers never see half a file
    except OSError:
        # a read-only or full disk only costs recomputation next time; the values are exact anyway
        pass


@lru_cache(maxsize=None)
def cg_pair_blocks(l1: int, l2: int) -> dict[int, np.ndarray]:
    """All dense blocks of the pair (l1, l2): ``{l: array (2l1+1, 2l2+1, 2l+1)}``, read-only."""
    check_lm(l1, None, "l1")
    check_lm(l2, None, "l2")
    values = _read_pair(l1, l2)
    if values is None:
        values = _compute_pair(l1, l2)
        _write_pair(l1, l2, values)
    ls, m1s, m2s = _pair_entries(l1, l2)
    blocks = {}
    for l in range(abs(l1 - l2), l1 + l2 + 1):
        sel = ls == l
        block = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l + 1))
        block[m1s[sel] + l1, m2s[sel] + l2, m1s[sel] + m2s[sel] + l] = values[sel]
        block.setflags(write=False)
        blocks[l] = block
    return blocks


def cg_block(l1: int, l2: int, l: int) -> np.ndarray:
    """Dense float64 block ``C[m1+l1, m2+l2, m+l] = ⟨l1 m1; l2 m2 | l m⟩``, read-only.

    Raises ValueError unless |l1 - l2| <= l <= l1 + l2.
    """
    for name, v in (("l1", l1), ("l2", l2), ("l", l)):
        check_lm(v, None, name)
    if not _triangle(l1, l2, l):
        raise ValueError(f"cg_block needs |l1-l2| <= l <= l1+l2, got l1={l1}, l2={l2}, l={l}")
    return cg_pair_blocks(int(l1), int(l2))[int(l)]


@lru_cache(maxsize=None)
def cg_sparse(l1: int, l2: int, l: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nonzero entries of a block: ``(m1, m2, m, value)`` arrays, m's as signed integers.

    Ordered by m1 then m2; ``m == m1 + m2`` for every entry.
    """
    block = cg_block(l1, l2, l)
    i1, i2, i = np.nonzero(block)
    arrays = (i1 - l1, i2 - l2, i - l, block[i1, i2, i])
    for a in arrays:
        a.setflags(write=False)
    return arrays


def clear_memory_cache() -> None:
    """Forget the in-memory tables (the disk cache stays)."""
    cg_pair_blocks.cache_clear()
    cg_sparse.cache_clear()
