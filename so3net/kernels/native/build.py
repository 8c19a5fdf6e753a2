"""Compiling and loading the CPU kernels (``full_cg.c``, ``zip_cg.c``, ``padded_msg.c``, ``pair_dots.c``), and the mode switch.

The sources are compiled on first use with the system C compiler (``cc``, or ``$CC`` split like a
shell would; ``-O3 -march=native -fopenmp``) into ``~/.cache/so3net/native`` (or
``$SO3NET_CACHE_DIR/native``), keyed by the sources, the flags, the compiler command (all words of
``$CC``) and version and the CPU, loaded with ctypes, and their table layout checked against :mod:`.layout`'s structures. A build records
the SHA-256 of its library in ``full_cg-<key>.sha256`` (``sha256sum`` format, written atomically
after the library, which is named by its checksum); a cached library is loaded only when it
matches that record, and otherwise rebuilt with a warning (a truncated library gave SIGBUS on
load, a flipped byte crashes or wrong results).
``SO3NET_CPU_KERNELS`` = ``auto`` (default: compiled kernels when a compiler is there; otherwise
a warning, once, says why and the torch path runs), ``native`` (compiled kernels or a
``RuntimeError`` that says why) or ``torch`` (never compile).
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

from .layout import FIXED_N2, GENERIC, SUFFIX, _Tables, _ZipTables

__all__ = ["mode", "library", "status", "cpu_summary", "MODES"]

MODES = ("auto", "native", "torch")
_SOURCE = Path(__file__).with_name("full_cg.c")
_SOURCES = (_SOURCE, _SOURCE.with_name("zip_cg.c"), _SOURCE.with_name("padded_msg.c"), _SOURCE.with_name("pair_dots.c"))
_HEADERS = (_SOURCE.with_name("private_buffers.h"),)     # included by the sources: part of the cache key
_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno")
_VARIANTS = [f"#define FIXED_N2 {n}\n#define VARIANT n{n}\n#include \"full_cg.c\"\n#undef FIXED_N2\n#undef VARIANT\n"
             for n in FIXED_N2] + \
            [f"#define GENERIC_VBYTES {v}\n#define VARIANT any{v}\n#include \"full_cg.c\"\n#undef GENERIC_VBYTES\n"
             f"#undef VARIANT\n" for v in GENERIC]
_DRIVER = "".join(f"#define REAL {real}\n#define SUFFIX {suffix}\n" + "".join(_VARIANTS)
                  + '#include "zip_cg.c"\n#include "padded_msg.c"\n#include "pair_dots.c"\n#undef REAL\n#undef SUFFIX\n'
                  for real, suffix in (("float", "f32"), ("double", "f64")))
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


def cpu_summary() -> str:
    """The CPU in one line, for benchmark headers: model, logical CPUs and the widest vector ISA the
    compiled kernels can use (AVX-512, AVX2, AVX, or none of them), e.g.
    ``"AMD EPYC, 2 logical CPUs, AVX2 (no AVX-512)"``."""
    model, flags = platform.processor() or platform.machine(), set()
    for line in _cpu_signature().splitlines():      # the "model name" and "flags" lines of /proc/cpuinfo
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            model = value.strip()
        elif sep and key.strip() == "flags":
            flags = set(value.split())
    isa = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2 (no AVX-512)"), ("avx", "AVX"))
                if flag in flags), "no AVX" if flags else "vector ISA unknown")
    return f"{model}, {os.cpu_count()} logical CPUs, {isa}"


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
    key = hashlib.sha256("\0".join([*(f.read_text() for f in _SOURCES + _HEADERS), _DRIVER, " ".join(_FLAGS), " ".join(cc),
                                    version, _cpu_signature()]).encode()).hexdigest()[:20]
    cache = _cache_dir()
    record = cache / f"full_cg-{key}.sha256"
    verified = _verified(record)
    if verified is not None:
        return verified
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
            raise RuntimeError(f"compiling {', '.join(f.name for f in _SOURCES)} with {' '.join(cc)} failed:\n"
                               f"{run.stderr.strip()}")
        digest = _sha256(built)
        target = cache / f"full_cg-{key}-{digest[:16]}.so"
        os.replace(built, target)          # atomic, and named by its content: concurrent builders agree
        checksum = Path(tmp) / "record"
        checksum.write_text(f"{digest}  {target.name}\n")
        os.replace(checksum, record)       # the record names a complete library, never half of one
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(record: Path) -> Path | None:
    """The library named by the checksum ``record`` if its SHA-256 matches; None (with a warning
    when something is there but damaged) when it must be built."""
    try:
        fields = record.read_text().split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        fields = [str(err)]
    if len(fields) != 2 or len(fields[0]) != 64 or "/" in fields[1]:
        warnings.warn(f"so3net: the checksum record {record} of the compiled kernels is damaged (expected "
                      f"'<sha256>  <file name>', got {' '.join(fields)[:80]!r}); rebuilding", RuntimeWarning,
                      stacklevel=3)
        return None
    digest, name = fields
    target = record.parent / name
    try:
        actual = _sha256(target)
    except OSError as err:
        problem = f"cannot be read ({err.strerror or err})"
    else:
        if actual == digest:
            return target
        problem = f"is damaged or truncated (SHA-256 {actual[:16]}...)"
    warnings.warn(f"so3net: the compiled kernels {target} {problem}; expected the SHA-256 {digest[:16]}... "
                  f"recorded at build time in {record}; rebuilding", RuntimeWarning, stacklevel=3)
    return None



def _declare(lib: ctypes.CDLL) -> None:
    p, lng, i = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in SUFFIX.values():
        for variant in [f"n{n}" for n in FIXED_N2] + [f"any{v}" for v in GENERIC]:
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
        fwd = getattr(lib, f"padded_msg_forward_{suffix}")
        fwd.argtypes, fwd.restype = [lng] * 7 + [p] * 8 + [i], i
        bwd = getattr(lib, f"padded_msg_backward_{suffix}")
        bwd.argtypes, bwd.restype = [lng] * 7 + [p] * 11 + [i], i
        fwd = getattr(lib, f"pair_dots_forward_{suffix}")
        fwd.argtypes, fwd.restype = [lng] * 6 + [p] * 6 + [i], i
        bwd = getattr(lib, f"pair_dots_backward_{suffix}")
        bwd.argtypes, bwd.restype = [lng] * 6 + [p] * 7 + [i], i


def library(m: str | None = None) -> ctypes.CDLL | None:
    """The compiled kernels, or ``None`` in mode ``torch`` or (with a warning, once) when ``auto``
    cannot build them; mode ``native`` raises instead. ``m``: the mode (default :func:`mode`, the
    environment's; the ``native`` backend passes ``"native"``)."""
    m = m or mode()
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
            raise RuntimeError(f"the 'native' CPU kernels (backend 'native' or SO3NET_CPU_KERNELS=native) are "
                               f"unavailable: {_loaded['error']}. Use backend 'torch' for the torch-op path.")
        return _loaded["lib"]


def status() -> str:
    """One line: which path full CG products take on the CPU, and why."""
    lib = library()
    if lib is not None:
        return f"compiled ({lib._name})"
    return "torch (SO3NET_CPU_KERNELS=torch)" if mode() == "torch" else f"torch ({_loaded['error']})"

