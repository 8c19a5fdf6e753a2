"""Exact Clebsch–Gordan coefficients ⟨l1 m1; l2 m2 | l m⟩ (Condon–Shortley phase).

Every coefficient is derived exactly from the Racah formula with Python integers: its value is
``sign * sqrt(p/q)`` with ``p/q`` an exact rational. It is converted to float64 once, correctly
rounded (integer square root with a sticky bit). Tables are cached in memory and on disk.

Defining identity (pinned by tests): for every rotation R,
``(D^{l1}(R) ⊗ D^{l2}(R)) C = C D^l(R)`` where ``C[m1+l1, m2+l2, m+l] = ⟨l1 m1; l2 m2 | l m⟩``,
and the coefficients are nonzero only when ``m = m1 + m2`` and the triangle rule holds.

On-disk cache: one file per pair (l1, l2) under ``$SO3NET_CACHE_DIR`` (default
``~/.cache/so3net``), in a folder versioned by ``CACHE_VERSION``. Each file carries a header
(magic, version, l1, l2, count) and a SHA-256 of its payload; a file that is truncated, corrupt,
of another version or of another pair, with entries outside their blocks, whose first
coefficient differs from its exact recomputation, or that is not orthogonal with the sign symmetry
of the coefficients (a value changed and the hash recomputed), is rebuilt, never trusted.
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["clebsch_gordan", "cg_exact", "cg_block", "cg_sparse", "cg_pair_blocks", "cache_dir",
           "clear_memory_cache", "check_lm", "CACHE_VERSION"]

CACHE_VERSION = 3
_MAGIC = b"SO3NETCG"
_HEADER = struct.Struct("<8sIIIIQ32s")  # magic, version, l1, l2, (pad), count, sha256(payload)


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


def _racah(l1: int, m1: int, l2: int, m2: int, l: int, m: int) -> tuple[int, int, int]:
    """``(sign, N, D)`` with ⟨l1 m1; l2 m2 | l m⟩ = sign * sqrt(N / D) exactly (Python integers).

    Racah's formula; the alternating sum is taken over a common multiple of its denominators,
    ``kmax! (a-kmin)! (b-kmin)! (c-kmin)! (d+kmax)! (e+kmax)!``, so every term is an integer.
    """
    if m != m1 + m2 or not _triangle(l1, l2, l):
        return 0, 0, 1
    f = _fact
    a, b, c, d, e = l1 + l2 - l, l1 - m1, l2 + m2, l - l2 + m1, l - l1 - m2
    kmin, kmax = max(0, -d, -e), min(a, b, c)
    if kmin > kmax:
        return 0, 0, 1
    common = f(kmax) * f(a - kmin) * f(b - kmin) * f(c - kmin) * f(d + kmax) * f(e + kmax)
    total = 0
    for k in range(kmin, kmax + 1):
        term = common // (f(k) * f(a - k) * f(b - k) * f(c - k) * f(d + k) * f(e + k))
        total += -term if k & 1 else term
    if total == 0:
        return 0, 0, 1
    num = (2 * l + 1) * f(a) * f(l1 - l2 + l) * f(l2 - l1 + l) * total * total
    num *= f(l + m) * f(l - m) * f(l1 - m1) * f(l1 + m1) * f(l2 - m2) * f(l2 + m2)
    return (1 if total > 0 else -1), num, f(l1 + l2 + l + 1) * common * common


def _to_float(sign: int, num: int, den: int) -> float:
    """``sign * sqrt(num / den)`` correctly rounded to float64 (integer square root, sticky bit)."""
    if sign == 0:
        return 0.0
    k = max(0, (114 - (num.bit_length() - den.bit_length())) // 2 + 1)  # sqrt has >= 56 bits
    scaled = num << (2 * k)
    q, rest = divmod(scaled, den)
    s = math.isqrt(q)
    if rest or s * s != q:  # inexact: a sticky low bit keeps round-to-nearest correct
        s, k = 2 * s + 1, k + 1
    return sign * math.ldexp(float(s), -k)


def cg_exact(l1: int, m1: int, l2: int, m2: int, l: int, m: int):
    """The coefficient as an exact sympy number ``sign * sqrt(p/q)``."""
    import sympy

    for name, (a, b) in {"l1": (l1, m1), "l2": (l2, m2), "l": (l, m)}.items():
        check_lm(a, b, name)
    sign, num, den = _racah(l1, m1, l2, m2, l, m)
    return sign * sympy.sqrt(sympy.Rational(num, den))


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
#
# A pair (l1, l2) is stored as its nonzero coefficients in the canonical order l, then m1, then m2:
# float64 values, int16 m1 and m2 (m = m1 + m2), and the int32 number of entries of each l.
# The sparse tables are slices of these arrays; dense blocks are built lazily, one at a time.

def cache_dir() -> Path:
    """The versioned folder of the on-disk CG cache (``$SO3NET_CACHE_DIR`` overrides)."""
    return Path(_cache_dir())


def _cache_dir() -> str:
    root = os.environ.get("SO3NET_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "so3net")
    return os.path.join(root, f"cg-v{CACHE_VERSION}")


def _pair_entries(l1: int, l2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slots (l, m1, m2) with |m1 + m2| <= l of the pair in canonical order: three int arrays."""
    ls, m1s, m2s = np.meshgrid(np.arange(abs(l1 - l2), l1 + l2 + 1), np.arange(-l1, l1 + 1),
                               np.arange(-l2, l2 + 1), indexing="ij")
    keep = np.abs(m1s + m2s) <= ls
    return ls[keep], m1s[keep], m2s[keep]


def _compute_pair(l1: int, l2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(values, m1, m2, counts)`` of the nonzero coefficients of the pair, computed exactly.

    Uses ⟨l1 -m1; l2 -m2 | l -m⟩ = (-1)^(l1+l2-l) ⟨l1 m1; l2 m2 | l m⟩ to compute half of them.
    """
    ls, m1s, m2s = _pair_entries(l1, l2)
    values = np.empty(len(ls))
    seen: dict[tuple[int, int, int], int] = {}
    for i, (l, m1, m2) in enumerate(zip(ls.tolist(), m1s.tolist(), m2s.tolist())):
        j = seen.get((l, -m1, -m2))
        if j is None:
            values[i] = _to_float(*_racah(l1, m1, l2, m2, l, m1 + m2))
            seen[l, m1, m2] = i
        else:
            values[i] = values[j] if (l1 + l2 - l) % 2 == 0 else -values[j]
    keep = values != 0
    counts = np.bincount(ls[keep] - abs(l1 - l2), minlength=2 * min(l1, l2) + 1)
    return values[keep], m1s[keep].astype(np.int16), m2s[keep].astype(np.int16), counts.astype(np.int32)


def _pair_path(l1: int, l2: int) -> str:
    return os.path.join(_cache_dir(), f"{l1}_{l2}.bin")


def _valid(l1: int, l2: int, values, m1, m2, counts) -> bool:
    """Entries inside their blocks, and the first one equal bit for bit to its exact recomputation."""
    if len(values) == 0 or counts.sum() != len(values) or counts.min() < 0:
        return False
    ls = np.repeat(np.arange(abs(l1 - l2), l1 + l2 + 1), counts)
    if (np.abs(m1) > l1).any() or (np.abs(m2) > l2).any() or (np.abs(m1 + m2) > ls).any():
        return False
    a, b, l = int(m1[0]), int(m2[0]), int(ls[0])
    return values[0] == _to_float(*_racah(l1, a, l2, b, l, a + b)) and _orthogonal(l1, l2, values, m1, m2, ls)


def _orthogonal(l1: int, l2: int, values, m1, m2, ls, tol: float = 1e-12) -> bool:
    """The table is a real orthogonal change of basis with the sign symmetry of its values.

    For each m = m1 + m2 the coefficients form a square matrix (rows m1, columns l >= |m|) with
    orthonormal columns, and ``<l1 -m1; l2 -m2 | l -m> = (-1)^(l1+l2-l) <l1 m1; l2 m2 | l m>``
    holds exactly; together they catch a changed value or a flipped sign anywhere in the table.
    """
    lmin, L = abs(l1 - l2), l1 + l2
    B = np.zeros((2 * L + 1, 2 * l1 + 1, L - lmin + 1))
    B[m1 + m2 + L, m1 + l1, ls - lmin] = values
    columns = np.abs(np.arange(-L, L + 1))[:, None] <= np.arange(lmin, L + 1)       # (m, l): l >= |m|
    gram = np.einsum("kil,kij->klj", B, B) - np.eye(L - lmin + 1) * columns[:, None, :]
    sign = np.where((L - np.arange(lmin, L + 1)) % 2 == 0, 1.0, -1.0)
    return bool(np.abs(gram).max() < tol and np.array_equal(B[::-1, ::-1] * sign, B))


def _read_pair(l1: int, l2: int):
    """``(values, m1, m2, counts)`` from the disk cache, or None when missing, stale or corrupt."""
    try:
        with open(_pair_path(l1, l2), "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    if len(raw) < _HEADER.size:
        return None
    magic, version, a, b, _, count, digest = _HEADER.unpack_from(raw)
    payload = memoryview(raw)[_HEADER.size:]
    nl = 2 * min(l1, l2) + 1
    if (magic != _MAGIC or version != CACHE_VERSION or (a, b) != (l1, l2)
            or len(payload) != 12 * count + 4 * nl or hashlib.sha256(payload).digest() != digest):
        return None
    table = (np.frombuffer(payload, dtype="<f8", count=count),
             np.frombuffer(payload, dtype="<i2", count=count, offset=8 * count),
             np.frombuffer(payload, dtype="<i2", count=count, offset=10 * count),
             np.frombuffer(payload, dtype="<i4", count=nl, offset=12 * count))
    return table if _valid(l1, l2, *table) else None


def _write_pair(l1: int, l2: int, values, m1, m2, counts) -> None:
    path = _pair_path(l1, l2)
    payload = b"".join(np.ascontiguousarray(a, dtype=t).tobytes()
                       for a, t in ((values, "<f8"), (m1, "<i2"), (m2, "<i2"), (counts, "<i4")))
    header = _HEADER.pack(_MAGIC, CACHE_VERSION, l1, l2, 0, len(values), hashlib.sha256(payload).digest())
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=os.path.basename(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(header + payload)
        os.replace(tmp, path)  # atomic: readers never see half a file
    except OSError:
        # a read-only or full disk only costs recomputation next time; the values are exact anyway
        pass


@lru_cache(maxsize=None)
def _pair_table(l1: int, l2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """``(values, m1, m2, m, start)`` of the pair (read-only int64 m's), from disk or exact
    computation; the entries of ``l`` are ``start[l - |l1-l2|] : start[l - |l1-l2| + 1]``."""
    table = _read_pair(l1, l2)
    if table is None:
        table = _compute_pair(l1, l2)
        _write_pair(l1, l2, *table)
    values, m1, m2, counts = table
    m1, m2 = m1.astype(np.int64), m2.astype(np.int64)
    arrays = (values, m1, m2, m1 + m2)
    for a in arrays:
        a.setflags(write=False)
    return (*arrays, [0] + np.cumsum(counts).tolist())


def _check_triple(l1: int, l2: int, l: int, name: str) -> None:
    if type(l1) is type(l2) is type(l) is int and l1 >= 0 and l2 >= 0 and abs(l1 - l2) <= l <= l1 + l2:
        return  # the common case, without the cost of the detailed checks
    for label, v in (("l1", l1), ("l2", l2), ("l", l)):
        check_lm(v, None, label)
    if not _triangle(l1, l2, l):
        raise ValueError(f"{name} needs |l1-l2| <= l <= l1+l2, got l1={l1}, l2={l2}, l={l}")


def cg_sparse(l1: int, l2: int, l: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nonzero entries of a block: ``(m1, m2, m, value)`` read-only arrays, m's as signed integers.

    Ordered by m1 then m2; ``m == m1 + m2`` for every entry. No dense block is built.
    """
    _check_triple(l1, l2, l, "cg_sparse")
    values, m1, m2, m, start = _pair_table(int(l1), int(l2))
    i, j = start[l - abs(l1 - l2)], start[l - abs(l1 - l2) + 1]
    return m1[i:j], m2[i:j], m[i:j], values[i:j]


@lru_cache(maxsize=None)
def _block(l1: int, l2: int, l: int) -> np.ndarray:
    m1, m2, m, values = cg_sparse(l1, l2, l)
    block = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l + 1))
    block[m1 + l1, m2 + l2, m + l] = values
    block.setflags(write=False)
    return block


def cg_block(l1: int, l2: int, l: int) -> np.ndarray:
    """Dense float64 block ``C[m1+l1, m2+l2, m+l] = ⟨l1 m1; l2 m2 | l m⟩``, read-only.

    Raises ValueError unless |l1 - l2| <= l <= l1 + l2.
    """
    _check_triple(l1, l2, l, "cg_block")
    return _block(int(l1), int(l2), int(l))


def cg_pair_blocks(l1: int, l2: int) -> dict[int, np.ndarray]:
    """All dense blocks of the pair (l1, l2): ``{l: array (2l1+1, 2l2+1, 2l+1)}``, read-only."""
    check_lm(l1, None, "l1")
    check_lm(l2, None, "l2")
    return {l: _block(int(l1), int(l2), l) for l in range(abs(l1 - l2), l1 + l2 + 1)}


def clear_memory_cache() -> None:
    """Forget the in-memory tables (the disk cache stays)."""
    _pair_table.cache_clear()
    _block.cache_clear()
