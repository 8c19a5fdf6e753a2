"""Compiled CPU kernels for the full CG product (any operand types): forward and input gradients.

A ``full`` plan whose paths each pair every fragment of x's part l1 with every fragment of y's
part l2 (all products built by :func:`so3net.plan.cg_plan` with kind ``full``, and the backward
plans of those) writes its packed output as a sequence of row-matrices, one per (part l, row m,
block (l1, l2)), each (tau1[l1], tau2[l2]) row-major. ``full_cg.c`` evaluates the product and both
input gradients reading only the nonzero CG terms, one sample at a time, with every inner loop a
vectorised pass over the channels of a row (its header gives the formulas); the torch twin's
GEMMs (:mod:`..torch_blocks`) also multiply the structural zeros and need uniform types, and its
path-by-path evaluation is slower still. The source is compiled on first use with the system C
compiler (``cc``, or ``$CC``; ``-O3 -march=native -fopenmp``) into ``~/.cache/so3net/native``
(or ``$SO3NET_CACHE_DIR/native``), keyed by the source, the flags, the compiler and the CPU, and
loaded with ctypes; threads: ``torch.get_num_threads()``.

Which path runs is explicit: ``SO3NET_CPU_KERNELS`` = ``auto`` (default: compiled kernels when a
compiler is there; otherwise a warning, once, says why and the torch path runs), ``native``
(compiled kernels or a ``RuntimeError`` that says why) or ``torch`` (never compile).
:func:`status` says what is in force. float32/float64 and complex64/complex128 (interleaved; the
CG coefficients are real in both bases) are covered; the kernels compute plain bilinear forms, the
callers pass conjugated operands where a plan reads them.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["mode", "library", "status", "Tables", "ZipTables", "tables", "forward", "backward", "MODES"]

MODES = ("auto", "native", "torch")
_SOURCE = Path(__file__).with_name("full_cg.c")
_SOURCES = (_SOURCE, _SOURCE.with_name("zip_cg.c"))
_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno")
_FIXED_N2 = (4, 8, 16, 32)               # channel counts of y with an unrolled variant
_GENERIC = (32, 16)                      # vector bytes of the variants for rows of varying n2
_VARIANTS = [f"#define FIXED_N2 {n}\n#define VARIANT n{n}\n#include \"full_cg.c\"\n#undef FIXED_N2\n#undef VARIANT\n"
             for n in _FIXED_N2] + \
            [f"#define GENERIC_VBYTES {v}\n#define VARIANT any{v}\n#include \"full_cg.c\"\n#undef GENERIC_VBYTES\n"
             f"#undef VARIANT\n" for v in _GENERIC]
_DRIVER = "".join(f"#define REAL {real}\n#define SUFFIX {suffix}\n" + "".join(_VARIANTS)
                  + '#include "zip_cg.c"\n#undef REAL\n#undef SUFFIX\n' for real, suffix in (("float", "f32"), ("double", "f64")))
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_COMPILE_TIMEOUT_S = 300
_ABI = 3                                  # SO3NET_NATIVE_ABI of full_cg.c: the layout of _Tables, _ZipTables
_lock = threading.Lock()
_loaded: dict = {}


def mode() -> str:
    """The setting of ``SO3NET_CPU_KERNELS`` (``auto`` when unset); anything else raises."""
    value = os.environ.get("SO3NET_CPU_KERNELS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"SO3NET_CPU_KERNELS must be one of {MODES}, got {value!r}")
    return value


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor()


def _compiler() -> list[str]:
    """The compiler command (``$CC`` split like a shell would, e.g. ``ccache gcc``; default ``cc``)."""
    command = shlex.split(os.environ.get("CC", "") or "cc")
    found = shutil.which(command[0])
    if found is None:
        raise RuntimeError(f"no C compiler: {command[0]!r} is not on PATH (install gcc, or set CC)")
    return [found, *command[1:]]


def _cache_dir() -> Path:
    root = os.environ.get("SO3NET_CACHE_DIR") or str(Path.home() / ".cache" / "so3net")
    return Path(root) / "native"


def _build() -> Path:
    cc = _compiler()
    version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256("\0".join([*(f.read_text() for f in _SOURCES), _DRIVER, " ".join(_FLAGS), version,
                                    _cpu_signature()]).encode()).hexdigest()[:20]
    cache = _cache_dir()
    target = cache / f"full_cg-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        driver = Path(tmp) / "driver.c"
        driver.write_text(_DRIVER)
        built = Path(tmp) / "lib.so"
        try:
            run = subprocess.run([*cc, *_FLAGS, f"-I{_SOURCE.parent}", str(driver), "-o", str(built)],
                                 capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"compiling the CG kernels ({_SOURCE.name}) with {' '.join(cc)} took over "
                               f"{_COMPILE_TIMEOUT_S} s") from err
        if run.returncode != 0:
            raise RuntimeError(f"compiling {_SOURCE.name} and {_SOURCES[1].name} with {' '.join(cc)} failed:\n"
                               f"{run.stderr.strip()}")
        os.replace(built, target)          # atomic: concurrent builders agree
    return target


_COUNTS = ("J", "dim1", "dim2", "dim_out", "n2max", "G", "H")
_ARRAYS = ("rn1", "rn2", "ooff", "rtri", "qrow", "qy", "so", "qterm", "qx", "prow", "px", "wo", "pterm", "py")


class _Tables(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in _COUNTS] + [(name, ctypes.c_void_p) for name in _ARRAYS]


_ZIP_ARRAYS = ("rn", "ooff", "bx", "by", "zterm", "xo", "yo")


class _ZipTables(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("J", "dim1", "dim2", "dim_out")] + \
               [(name, ctypes.c_void_p) for name in _ZIP_ARRAYS]


def _declare(lib: ctypes.CDLL) -> None:
    p, lng, i = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in _SUFFIX.values():
        for variant in [f"n{n}" for n in _FIXED_N2] + [f"any{v}" for v in _GENERIC]:
            for kind in ("", "_complex"):
                fwd = getattr(lib, f"full_cg_forward{kind}_{suffix}_{variant}")
                fwd.argtypes, fwd.restype = [ctypes.POINTER(_Tables), p, lng, p, p, p, i], i
                bwd = getattr(lib, f"full_cg_backward{kind}_{suffix}_{variant}")
                bwd.argtypes, bwd.restype = [ctypes.POINTER(_Tables), p, p, lng, p, p, p, p, p, i], i
        for kind in ("", "_complex"):
            fwd = getattr(lib, f"zip_cg_forward{kind}_{suffix}")
            fwd.argtypes, fwd.restype = [ctypes.POINTER(_ZipTables), p, lng, p, p, p, i], i
            bwd = getattr(lib, f"zip_cg_backward{kind}_{suffix}")
            bwd.argtypes, bwd.restype = [ctypes.POINTER(_ZipTables), p, lng, p, p, p, p, p, i], i


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or ``None`` in mode ``torch`` or (with a warning, once) when ``auto``
    cannot build them; mode ``native`` raises instead."""
    m = mode()
    if m == "torch":
        return None
    with _lock:
        if "lib" not in _loaded:
            try:
                lib = ctypes.CDLL(str(_build()))
                if lib.so3net_native_abi() != _ABI:
                    raise RuntimeError(f"{lib._name} has table layout {lib.so3net_native_abi()}, this so3net "
                                       f"expects {_ABI} (restart Python after updating so3net)")
                _declare(lib)
                _loaded["lib"], _loaded["error"] = lib, None
            except (RuntimeError, OSError, AttributeError) as err:
                _loaded["lib"], _loaded["error"] = None, str(err)
                if m == "auto":
                    warnings.warn(f"so3net: compiled CPU kernels unavailable, full CG products take the torch "
                                  f"path (slower). Reason: {err}. Set SO3NET_CPU_KERNELS=torch to choose "
                                  f"that path explicitly.", RuntimeWarning, stacklevel=2)
        if _loaded["lib"] is None and m == "native":
            raise RuntimeError(f"SO3NET_CPU_KERNELS=native but the compiled CPU kernels are unavailable: "
                               f"{_loaded['error']}")
        return _loaded["lib"]


def status() -> str:
    """One line: which path full CG products take on the CPU, and why."""
    lib = library()
    if lib is not None:
        return f"compiled ({lib._name})"
    return "torch (SO3NET_CPU_KERNELS=torch)" if mode() == "torch" else f"torch ({_loaded['error']})"


def _size(n1: int, n2: int, tri: int) -> int:
    """Entries of a row-matrix: a full (n1, n2) block (tri = -1) or the triangle c2 >= c1 + tri."""
    return n1 * n2 if tri < 0 else max(0, n1 - tri) * (n1 - tri + 1) // 2


def _blocks(p, n1: int, n2: int):
    """The output blocks of path ``p`` as ``(out index, tri)``: ``tri = -1`` when the path pairs all
    fragments (an (n1, n2) block), ``k`` for the row-major upper triangle ``triu_indices(n, k)``
    (the symmetric square's l1 = l2 blocks); ``None`` for anything else."""
    left, right, out = (np.asarray(a, dtype=np.int64) for a in (p.left, p.right, p.out))
    if not len(out):
        return []
    if not (out == out[0] + np.arange(len(out))).all():
        return None
    if len(out) == n1 * n2 and (left == np.repeat(np.arange(n1), n2)).all() \
            and (right == np.tile(np.arange(n2), n1)).all():
        return [(int(out[0]), -1)]
    for k in (0, 1):
        i, j = np.triu_indices(n1, k=k)
        if n1 == n2 and len(out) == len(i) and (left == i).all() and (right == j).all():
            return [(int(out[0]), k)]
    return None


def _rows(plan) -> list | None:
    """Per output row-matrix ``(offset, n1, n2, terms, tri)`` with terms ``(x-row offset, y-row
    offset, coefficient)`` (nonzero, merged), in packed order; ``None`` unless every path of
    ``plan`` is made of full blocks or triangles (:func:`_blocks`: full products, the symmetric
    square and their backward plans) that cover the output once."""
    if plan.coef_perm != (0, 1, 2) or not plan.paths:
        return None
    rows = []
    for p, (m1, m2, m, c) in zip(plan.paths, plan.path_terms):
        n1, n2 = plan.tau1[p.l1], plan.tau2[p.l2]
        blocks = _blocks(p, n1, n2)
        if blocks is None:
            return None
        width = plan.tau_out[p.l]
        for row in range(2 * p.l + 1):
            sel = m == row
            for out, tri in blocks:
                merged: dict = {}
                for a, b, v in zip(m1[sel].tolist(), m2[sel].tolist(), c[sel].tolist()):
                    key = (plan.offsets1[p.l1] + a * n1, plan.offsets2[p.l2] + b * n2)
                    merged[key] = merged.get(key, 0.0) + v
                terms = [(xo, yo, v) for (xo, yo), v in sorted(merged.items()) if v != 0.0]
                rows.append((plan.offsets_out[p.l] + row * width + out, n1, n2, terms, tri))
    rows = [r for r in sorted(rows, key=lambda r: r[0]) if _size(r[1], r[2], r[4])]
    end = 0
    for offset, n1, n2, _, tri in rows:
        if offset != end:
            return None
        end += _size(n1, n2, tri)
    return rows if end == plan.dim_out else None


def _groups(rows: list, key: int, length: int):
    """The terms of each row grouped by ``t[key]`` (0: x-row offset, 1: y-row offset): row starts,
    each group's offset, its scratch offset (prefix sums of the row's ``length`` entry: n1 or n2),
    term starts, the other offset of each term, coefficients."""
    row_start, group, scratch, term_start, other, coef = [0], [], [0], [0], [], []
    for row in rows:
        terms = row[3]
        for value in sorted({t[key] for t in terms}):
            group.append(value)
            scratch.append(scratch[-1] + row[length])
            for t in terms:
                if t[key] == value:
                    other.append(t[1 - key])
                    coef.append(t[2])
            term_start.append(len(other))
        row_start.append(len(group))
    return [np.ascontiguousarray(v, dtype=np.int64) for v in (row_start, group, scratch, term_start, other)], coef


class Tables:
    """The nonzero CG terms of a full product (:func:`_rows`), grouped per output row by y row
    (q-groups) and by x row (p-groups), as the int64 arrays of ``full_cg.c`` and coefficients in
    float32 and float64; ``n2s``: the channel counts of its rows (:meth:`variant`)."""

    kernel = "full_cg"

    def __init__(self, plan, rows: list):
        (qrow, qy, so, qterm, qx), qc = _groups(rows, 1, 1)
        (prow, px, wo, pterm, py), pc = _groups(rows, 0, 2)
        i64 = lambda v: np.ascontiguousarray(v, dtype=np.int64)  # noqa: E731
        arrays = dict(rn1=i64([r[1] for r in rows]), rn2=i64([r[2] for r in rows]), ooff=i64([r[0] for r in rows]),
                      rtri=i64([r[4] for r in rows]), qrow=qrow, qy=qy, so=so, qterm=qterm, qx=qx, prow=prow, px=px, wo=wo, pterm=pterm, py=py)
        self._keep = arrays                                  # the struct points into these arrays
        self.dim1, self.dim2, self.dim_out = plan.dim1, plan.dim2, plan.dim_out
        self.n2s = frozenset(r[2] for r in rows)
        counts = dict(J=len(rows), dim1=plan.dim1, dim2=plan.dim2, dim_out=plan.dim_out,
                      n2max=max(r[2] for r in rows), G=len(qy), H=len(px))
        self.struct = _Tables(*(counts[n] for n in _COUNTS), *(arrays[n].ctypes.data for n in _ARRAYS))
        self._coef = {dt: (torch.as_tensor(qc, dtype=dt), torch.as_tensor(pc, dtype=dt)) for dt in _SUFFIX}


    def variant(self, dtype: torch.dtype) -> str:
        """The compiled variant for ``dtype``: unrolled when every row has the same n2 in
        ``_FIXED_N2``; else 32-byte vectors when they tile every row, else 16-byte ones."""
        if len(self.n2s) == 1 and min(self.n2s) in _FIXED_N2:
            return f"n{min(self.n2s)}"
        real = dtype.to_real() if dtype.is_complex else dtype
        row_bytes = [n * real.itemsize * (2 if dtype.is_complex else 1) for n in self.n2s]
        return "any32" if all(b % 32 == 0 for b in row_bytes) else "any16"


def _zip_rows(plan) -> list | None:
    """Per output row ``(offset, n, bx, by, terms)`` of a channel-wise plan (every path pairs
    fragment i with fragment i, a one-fragment side broadcasting: bx or by = 0), terms ``(x-row
    offset, y-row offset, coefficient)``; ``None`` for other plans or if the rows do not cover the
    output exactly once."""
    if plan.coef_perm != (0, 1, 2) or not plan.paths:
        return None
    rows = []
    for p, (m1, m2, m, c) in zip(plan.paths, plan.path_terms):
        n1, n2 = plan.tau1[p.l1], plan.tau2[p.l2]
        left, right, out = (np.asarray(a, dtype=np.int64) for a in (p.left, p.right, p.out))
        n = len(out)
        if not n:
            continue
        steps = []
        for index, count in ((left, n1), (right, n2)):
            if (index == np.arange(n)).all():
                steps.append(1)
            elif count == 1 and not index.any():
                steps.append(0)
            else:
                return None
        if not (out == out[0] + np.arange(n)).all():
            return None
        width = plan.tau_out[p.l]
        for row in range(2 * p.l + 1):
            sel = m == row
            terms = [(plan.offsets1[p.l1] + a * n1, plan.offsets2[p.l2] + b * n2, v)
                     for a, b, v in zip(m1[sel].tolist(), m2[sel].tolist(), c[sel].tolist()) if v != 0.0]
            rows.append((plan.offsets_out[p.l] + row * width + int(out[0]), n, *steps, terms))
    rows.sort(key=lambda r: r[0])
    end = 0
    for offset, n, *_ in rows:
        if offset != end:
            return None
        end += n
    return rows if end == plan.dim_out else None


class ZipTables:
    """The nonzero CG terms of a channel-wise product (:func:`_zip_rows`) as the arrays of
    ``zip_cg.c``, with coefficients in float32 and float64."""

    kernel = "zip_cg"

    def __init__(self, plan, rows: list):
        i64 = lambda v: np.ascontiguousarray(v, dtype=np.int64)  # noqa: E731
        terms = [t for r in rows for t in r[4]]
        arrays = dict(rn=i64([r[1] for r in rows]), ooff=i64([r[0] for r in rows]), bx=i64([r[2] for r in rows]),
                      by=i64([r[3] for r in rows]), zterm=i64(np.cumsum([0] + [len(r[4]) for r in rows])),
                      xo=i64([t[0] for t in terms]), yo=i64([t[1] for t in terms]))
        self._keep = arrays                                  # the struct points into these arrays
        self.dim1, self.dim2, self.dim_out = plan.dim1, plan.dim2, plan.dim_out
        self.struct = _ZipTables(len(rows), plan.dim1, plan.dim2, plan.dim_out,
                                 *(arrays[n].ctypes.data for n in _ZIP_ARRAYS))
        coef = [t[2] for t in terms]
        self._coef = {dt: (torch.as_tensor(coef, dtype=dt),) * 2 for dt in _SUFFIX}

    def variant(self, dtype: torch.dtype) -> None:
        return None


def tables(plan) -> Tables | ZipTables | None:
    """The kernels' tables of a forward plan: :class:`Tables` for full products and the symmetric
    square (:func:`_rows`), :class:`ZipTables` for channel-wise products (:func:`_zip_rows`), else
    ``None``."""
    rows = _rows(plan)
    if rows:
        return Tables(plan, rows)
    rows = _zip_rows(plan)
    return ZipTables(plan, rows) if rows else None


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _dense(t: torch.Tensor | None) -> torch.Tensor | None:
    """Row-major storage the kernels can read (lazy conjugation and negation are applied here)."""
    return None if t is None else t.resolve_conj().resolve_neg().contiguous()


def _function(lib, tables, name: str, dtype: torch.dtype):
    real = dtype.to_real() if dtype.is_complex else dtype
    kind = "_complex" if dtype.is_complex else ""
    variant = tables.variant(dtype)
    return getattr(lib, f"{tables.kernel}_{name}{kind}_{_SUFFIX[real]}" + (f"_{variant}" if variant else ""))


def _coefficients(tables: Tables | ZipTables, dtype: torch.dtype):
    return tables._coef[dtype.to_real() if dtype.is_complex else dtype]


def _check(name: str, t: torch.Tensor | None, width: int, batch: int, dtype: torch.dtype, output: bool = False):
    """Raise unless ``t`` is a CPU tensor (batch, width) of ``dtype`` (and contiguous if an output)."""
    if t is None:
        raise ValueError(f"{name} is required here")
    real = dtype.to_real() if dtype.is_complex else dtype
    if real not in _SUFFIX:
        raise TypeError(f"compiled CG kernels take float32, float64, complex64 or complex128, got {dtype}")
    if t.dtype != dtype or t.device.type != "cpu" or tuple(t.shape) != (batch, width):
        raise ValueError(f"{name}: expected a CPU tensor of shape {(batch, width)} and dtype {dtype}, got "
                         f"{tuple(t.shape)} {t.dtype} on {t.device}")
    if output and not t.is_contiguous():
        raise ValueError(f"{name}: the output must be contiguous")


def _run(function, *args) -> None:
    if function(*args, torch.get_num_threads()) != 0:
        raise MemoryError("a compiled CG kernel could not allocate its per-thread scratch memory")


def forward(lib, tables: Tables | ZipTables, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out (B, dim_out)`` = the product of packed ``x (B, dim1)`` and ``y (B, dim2)`` (CPU tensors
    of one dtype; ``out`` contiguous). Shapes and dtypes are checked."""
    batch = x.shape[0] if x.dim() == 2 else -1
    _check("x", x, tables.dim1, batch, x.dtype)
    _check("y", y, tables.dim2, batch, x.dtype)
    _check("out", out, tables.dim_out, batch, x.dtype, output=True)
    x, y = _dense(x), _dense(y)
    qc, _ = _coefficients(tables, x.dtype)
    function = _function(lib, tables, "forward", x.dtype)
    _run(function, ctypes.byref(tables.struct), _ptr(qc), batch, _ptr(x), _ptr(y), _ptr(out))
    return out


def backward(lib, tables: Tables | ZipTables, gz: torch.Tensor, x: torch.Tensor | None, y: torch.Tensor | None,
             gx: torch.Tensor | None, gy: torch.Tensor | None) -> None:
    """Fill ``gx (B, dim1)`` (needs ``y``) and/or ``gy (B, dim2)`` (needs ``x``) from ``gz (B, dim_out)``
    (contiguous outputs of gz's dtype): the bilinear forms of the module docstring, no conjugation."""
    batch = gz.shape[0] if gz.dim() == 2 else -1
    _check("gz", gz, tables.dim_out, batch, gz.dtype)
    if gx is None and gy is None:
        raise ValueError("backward needs gx, gy or both")
    if gx is not None:
        _check("gx", gx, tables.dim1, batch, gz.dtype, output=True)
        _check("y (for gx)", y, tables.dim2, batch, gz.dtype)
    if gy is not None:
        _check("gy", gy, tables.dim2, batch, gz.dtype, output=True)
        _check("x (for gy)", x, tables.dim1, batch, gz.dtype)
    gz, x, y = _dense(gz), _dense(x), _dense(y)
    qc, pc = _coefficients(tables, gz.dtype)
    function = _function(lib, tables, "backward", gz.dtype)
    coefficients = (_ptr(qc),) if isinstance(tables, ZipTables) else (_ptr(qc), _ptr(pc))
    _run(function, ctypes.byref(tables.struct), *coefficients, batch, _ptr(gz), _ptr(x), _ptr(y), _ptr(gx), _ptr(gy))
