"""Compiled CPU kernels for the uniform full CG product: forward and input gradients.

The torch twin evaluates a uniform full product (every part of x has n1 fragments, every part of y
has n2; see :mod:`..torch_blocks`) as dense batched GEMMs, which also multiply the structural zeros
of the CG tables (about 2.5x the useful work for l <= 2) and, in the backward pass, run at a third
of the core's speed on their thin shapes. ``uniform_cg.c`` reads only the nonzero CG terms, one
sample at a time, with every inner loop a vectorised pass over the n2 channels of a row (its
header gives the formulas). It is compiled on first use with the system C compiler (``cc``, or
``$CC``; ``-O3 -march=native -fopenmp``) into ``~/.cache/so3net/native`` (or
``$SO3NET_CACHE_DIR/native``), keyed by the source, the flags, the compiler and the CPU, and
loaded with ctypes; threads: ``torch.get_num_threads()``.

Which path runs is explicit: ``SO3NET_CPU_KERNELS`` = ``auto`` (default: compiled kernels when a
compiler is there; otherwise a warning, once, says why and the torch GEMM path runs),
``native`` (compiled kernels or a ``RuntimeError`` that says why) or ``torch`` (never compile).
:func:`status` says what is in force. float32/float64 and complex64/complex128 (interleaved; the CG
coefficients are real in both bases) are covered; the kernels compute plain bilinear forms, the
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

__all__ = ["mode", "library", "status", "UniformTables", "forward", "backward", "MODES"]

MODES = ("auto", "native", "torch")
_SOURCE = Path(__file__).with_name("uniform_cg.c")
_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno")
_FIXED_N2 = (8, 16, 32)                  # channel counts of y with an unrolled variant; others: "any"
_DRIVER = "".join(f'#define REAL {real}\n#define SUFFIX {suffix}\n'
                  + "".join(f'#define FIXED_N2 {n}\n#define VARIANT n{n}\n#include "uniform_cg.c"\n#undef FIXED_N2\n'
                            f'#undef VARIANT\n' for n in _FIXED_N2)
                  + '#define VARIANT any\n#include "uniform_cg.c"\n#undef VARIANT\n#undef REAL\n#undef SUFFIX\n'
                  for real, suffix in (("float", "f32"), ("double", "f64")))
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_COMPILE_TIMEOUT_S = 300
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
    key = hashlib.sha256("\0".join([_SOURCE.read_text(), _DRIVER, " ".join(_FLAGS), version,
                                    _cpu_signature()]).encode()).hexdigest()[:20]
    cache = _cache_dir()
    target = cache / f"uniform_cg-{key}.so"
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
            raise RuntimeError(f"compiling {_SOURCE.name} with {' '.join(cc)} took over {_COMPILE_TIMEOUT_S} s") from err
        if run.returncode != 0:
            raise RuntimeError(f"compiling {_SOURCE.name} with {' '.join(cc)} failed:\n{run.stderr.strip()}")
        os.replace(built, target)          # atomic: concurrent builders agree
    return target


class _Tables(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("J", "n1", "n2", "R1", "R2", "G", "H")] + \
               [(name, ctypes.c_void_p) for name in ("qrow", "qq", "qterm", "qp", "prow", "pp", "pterm", "pq")]


def _declare(lib: ctypes.CDLL) -> None:
    p, lng, i = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in _SUFFIX.values():
        for variant in [f"n{n}" for n in _FIXED_N2] + ["any"]:
            for kind in ("", "_complex"):
                fwd = getattr(lib, f"uniform_cg_forward{kind}_{suffix}_{variant}")
                fwd.argtypes, fwd.restype = [ctypes.POINTER(_Tables), p, lng, p, p, p, i], i
                bwd = getattr(lib, f"uniform_cg_backward{kind}_{suffix}_{variant}")
                bwd.argtypes, bwd.restype = [ctypes.POINTER(_Tables), p, p, lng, p, p, p, p, p, i], i


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
                _declare(lib)
                _loaded["lib"], _loaded["error"] = lib, None
            except (RuntimeError, OSError, AttributeError) as err:
                _loaded["lib"], _loaded["error"] = None, str(err)
                if m == "auto":
                    warnings.warn(f"so3net: compiled CPU kernels unavailable, uniform CG products take the torch "
                                  f"GEMM path (slower). Reason: {err}. Set SO3NET_CPU_KERNELS=torch to choose "
                                  f"that path explicitly.", RuntimeWarning, stacklevel=2)
        if _loaded["lib"] is None and m == "native":
            raise RuntimeError(f"SO3NET_CPU_KERNELS=native but the compiled CPU kernels are unavailable: "
                               f"{_loaded['error']}")
        return _loaded["lib"]


def status() -> str:
    """One line: which path uniform full CG products take on the CPU, and why."""
    lib = library()
    if lib is not None:
        return f"compiled ({lib._name})"
    return "torch GEMMs (SO3NET_CPU_KERNELS=torch)" if mode() == "torch" else f"torch GEMMs ({_loaded['error']})"


def _groups(rows: list, key: int):
    """Rows of terms ``(p, q, c)`` grouped by ``t[key]``: (row starts, group index, term starts,
    the other index of each term, coefficients)."""
    row_start, group_of, term_start, other, coef = [0], [], [0], [], []
    for terms in rows:
        for value in sorted({t[key] for t in terms}):
            group_of.append(value)
            for t in terms:
                if t[key] == value:
                    other.append(t[1 - key])
                    coef.append(t[2])
            term_start.append(len(other))
        row_start.append(len(group_of))
    as_long = lambda v: np.ascontiguousarray(v, dtype=np.int64)  # noqa: E731
    return as_long(row_start), as_long(group_of), as_long(term_start), as_long(other), np.asarray(coef)


class UniformTables:
    """The nonzero CG terms of a uniform full product, grouped per output row by y-row (q-groups)
    and by x-row (p-groups), with coefficients in float32 and float64. ``layout`` is a
    :class:`..torch_blocks._Layout`."""

    def __init__(self, layout):
        rows = []
        for P1, P2, coef in zip(layout.P1, layout.P2, layout.coef):
            merged: dict = {}
            for p, q, c in zip(P1.tolist(), P2.tolist(), coef.tolist()):
                if c != 0.0:
                    merged[p, q] = merged.get((p, q), 0.0) + c
            rows.append([(p, q, c) for (p, q), c in sorted(merged.items()) if c != 0.0])
        qrow, qq, qterm, qp, qc = _groups(rows, 1)
        prow, pp, pterm, pq, pc = _groups(rows, 0)
        self._keep = (qrow, qq, qterm, qp, prow, pp, pterm, pq)
        self.n1, self.n2, self.R1, self.R2, self.J = layout.n1, layout.n2, layout.rows1, layout.rows2, len(rows)
        self.struct = _Tables(self.J, self.n1, self.n2, self.R1, self.R2, len(qq), len(pp),
                              *(a.ctypes.data for a in self._keep))
        self._coef = {dt: (torch.as_tensor(qc, dtype=dt), torch.as_tensor(pc, dtype=dt)) for dt in _SUFFIX}

    @property
    def width(self) -> int:
        return self.J * self.n1 * self.n2


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _dense(t: torch.Tensor | None) -> torch.Tensor | None:
    """Row-major storage the kernels can read (lazy conjugation and negation are applied here)."""
    return None if t is None else t.resolve_conj().resolve_neg().contiguous()


def _function(lib, name: str, dtype: torch.dtype, n2: int):
    real = dtype.to_real() if dtype.is_complex else dtype
    kind = "_complex" if dtype.is_complex else ""
    return getattr(lib, f"{name}{kind}_{_SUFFIX[real]}_{f'n{n2}' if n2 in _FIXED_N2 else 'any'}")


def _coefficients(tables: UniformTables, dtype: torch.dtype):
    return tables._coef[dtype.to_real() if dtype.is_complex else dtype]


def _check(name: str, t: torch.Tensor | None, width: int, batch: int, dtype: torch.dtype, output: bool = False):
    """Raise unless ``t`` is a CPU tensor (batch, width) of ``dtype`` (and contiguous if an output)."""
    if t is None:
        raise ValueError(f"{name} is required here")
    real = dtype.to_real() if dtype.is_complex else dtype
    if real not in _SUFFIX:
        raise TypeError(f"compiled uniform CG kernels take float32, float64, complex64 or complex128, got {dtype}")
    if t.dtype != dtype or t.device.type != "cpu" or tuple(t.shape) != (batch, width):
        raise ValueError(f"{name}: expected a CPU tensor of shape {(batch, width)} and dtype {dtype}, got "
                         f"{tuple(t.shape)} {t.dtype} on {t.device}")
    if output and not t.is_contiguous():
        raise ValueError(f"{name}: the output must be contiguous")


def _run(function, *args) -> None:
    if function(*args, torch.get_num_threads()) != 0:
        raise MemoryError("a compiled CG kernel could not allocate its per-thread scratch memory")


def forward(lib, tables: UniformTables, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out (B, J n1 n2)`` = the product of packed ``x (B, R1 n1)`` and ``y (B, R2 n2)`` (CPU tensors
    of one dtype; ``out`` contiguous). Shapes and dtypes are checked."""
    batch = x.shape[0] if x.dim() == 2 else -1
    _check("x", x, tables.R1 * tables.n1, batch, x.dtype)
    _check("y", y, tables.R2 * tables.n2, batch, x.dtype)
    _check("out", out, tables.width, batch, x.dtype, output=True)
    x, y = _dense(x), _dense(y)
    qc, _ = _coefficients(tables, x.dtype)
    _run(_function(lib, "uniform_cg_forward", x.dtype, tables.n2), ctypes.byref(tables.struct), _ptr(qc), batch,
         _ptr(x), _ptr(y), _ptr(out))
    return out


def backward(lib, tables: UniformTables, gz: torch.Tensor, x: torch.Tensor | None, y: torch.Tensor | None,
             gx: torch.Tensor | None, gy: torch.Tensor | None) -> None:
    """Fill ``gx (B, R1 n1)`` (needs ``y``) and/or ``gy (B, R2 n2)`` (needs ``x``) from ``gz``
    (contiguous outputs of gz's dtype): the bilinear forms of the module docstring, no conjugation."""
    batch = gz.shape[0] if gz.dim() == 2 else -1
    _check("gz", gz, tables.width, batch, gz.dtype)
    if gx is None and gy is None:
        raise ValueError("backward needs gx, gy or both")
    if gx is not None:
        _check("gx", gx, tables.R1 * tables.n1, batch, gz.dtype, output=True)
        _check("y (for gx)", y, tables.R2 * tables.n2, batch, gz.dtype)
    if gy is not None:
        _check("gy", gy, tables.R2 * tables.n2, batch, gz.dtype, output=True)
        _check("x (for gy)", x, tables.R1 * tables.n1, batch, gz.dtype)
    gz, x, y = _dense(gz), _dense(x), _dense(y)
    qc, pc = _coefficients(tables, gz.dtype)
    _run(_function(lib, "uniform_cg_backward", gz.dtype, tables.n2), ctypes.byref(tables.struct), _ptr(qc),
         _ptr(pc), batch, _ptr(gz), _ptr(x), _ptr(y), _ptr(gx), _ptr(gy))
