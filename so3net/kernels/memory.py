"""Large CPU outputs on transparent huge pages.

A fresh CPU tensor of tens of MB comes from ``mmap`` (glibc serves allocations above its mmap
threshold that way, unmapping them again on free; the threshold adapts to freed sizes up to
32 MB, so from about that size on every allocation is fresh), and the first write to each 4 KiB
page costs a page fault: on the 2-core development VM, 52 MB of fresh product output took
25-34 ms to fill against 6 ms for the same memory already mapped. :func:`empty` allocates with
torch as usual and, for CPU tensors of at least :data:`HUGE_PAGE_MIN_BYTES`, advises the kernel
(``madvise(MADV_HUGEPAGE)``, before any page is touched) to back the range with 2 MiB pages: one
fault per 2 MiB (12-14 ms for the same fill).
This is what torch's own ``THP_MEM_ALLOC_ENABLE=1`` does for every allocation, applied only to the
large outputs of the CG products; the tensor is an ordinary torch tensor.

The advice is a hint: where the platform has no ``madvise`` (not Linux) or the kernel has
transparent huge pages switched off, the tensor is the same and only the page faults differ;
:func:`huge_pages_available` says which case holds.

Recycling: even on huge pages, a fresh mapping costs the kernel zeroing every page (about half of
a product's forward time on the development VM). So large CPU outputs come from a small pool of
anonymous mappings (:class:`_Pool`, at most :func:`pool_limit` bytes, 1 GiB by default): a tensor
is made on a mapping with ``torch.frombuffer``, which holds a reference to it for as long as any
tensor uses that storage; a mapping that nothing references any more is handed out again (its
pages already mapped), the least recently used ones beyond the limit are unmapped. The tensors
are ordinary CPU tensors with non-resizable storage (``resize_`` to a larger size raises, as for
any tensor made from a buffer). ``set_pool_limit(0)`` (or ``SO3NET_POOL_BYTES=0``) turns the
pool off; the tests pin that values never depend on it.

Every other tensor (torch's own, of every op): glibc serves large blocks with ``mmap`` and unmaps
them on free, and returns the top of its heap to the system as soon as more than its trim
threshold lies free there, so a training step that frees and reallocates the same tensors every
layer faults their pages in again each time: a Cormorant QM9 step on 25 molecules took 55 000 page
faults (over 100 ms of a 585 ms step, 1 thread). At import (glibc only) :func:`tune_malloc`
therefore makes glibc serve blocks of any size from the main heap (``M_MMAP_MAX`` 0) and trim it
only when more than 2 GiB lies free at its top (``M_TRIM_THRESHOLD``), so freed memory is reused
without new faults: 220 faults per Cormorant step instead of 14 600, and a per-part loss of a
complex CG product (1000 rows, 115 MB of output) in 109 ms instead of 227 (docs/kernels.md). This covers what the main thread
allocates, where torch runs CPU ops and the backward of CPU tensors; other threads' arenas keep
glibc's behaviour. The price is the one every caching allocator pays, for the whole process: its
heap stays at its peak (a freed 256 MB block stays resident). ``SO3NET_MALLOC_TUNING=0`` leaves
glibc's settings alone; :func:`malloc_tuned` says whether they were set.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import os
import sys
import threading

import torch

__all__ = ["empty", "huge_pages_available", "HUGE_PAGE_MIN_BYTES", "pool_limit", "set_pool_limit", "pool_bytes",
           "tune_malloc", "malloc_tuned"]

HUGE_PAGE_MIN_BYTES = 8 << 20          # smaller outputs: glibc soon reuses freed memory without new faults
                                       # (advising heap memory between this and 32 MB is harmless)
_MADV_HUGEPAGE = 14
_PAGE = 4096


def _load_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_madvise = _load_madvise()

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4              # glibc's mallopt parameters (malloc.h)
_malloc_tuned = False


def tune_malloc() -> bool:
    """Keep freed memory for reuse (module docstring): glibc serves blocks of any size from the main
    heap (no mmap) and trims it only beyond 2 GiB free at its top. Returns whether glibc accepted both (False where the C library is not
    glibc); idempotent."""
    global _malloc_tuned
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _malloc_tuned = all([mallopt(_M_MMAP_MAX, 0) == 1, mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1]) or _malloc_tuned
    return _malloc_tuned


def malloc_tuned() -> bool:
    """Whether :func:`tune_malloc` set glibc's thresholds in this process."""
    return _malloc_tuned


def _tuning_from_environment() -> bool:
    value = os.environ.get("SO3NET_MALLOC_TUNING", "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"SO3NET_MALLOC_TUNING must be 1 (tune glibc's malloc, the default) or 0, got {value!r}")
    return value == "1"


if _tuning_from_environment():
    tune_malloc()


def huge_pages_available() -> bool:
    """Whether large CPU outputs get the huge-page advice (Linux with transparent huge pages in
    ``always`` or ``madvise`` mode)."""
    if _madvise is None:
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def advise_huge_pages(t: torch.Tensor) -> torch.Tensor:
    """Advise huge pages for the storage of a freshly allocated CPU tensor ``t`` (returned)."""
    nbytes = t.numel() * t.element_size()
    if _madvise is None or t.device.type != "cpu" or nbytes < HUGE_PAGE_MIN_BYTES:
        return t
    start = t.data_ptr()
    first = (start + _PAGE - 1) & ~(_PAGE - 1)
    length = (start + nbytes - first) & ~(_PAGE - 1)
    _madvise(first, length, _MADV_HUGEPAGE)     # a hint: failure leaves ordinary pages
    return t


class _Pool:
    """Anonymous mappings for large CPU tensors, handed out again once no tensor uses them.

    Each entry is ``[mapping, memoryview]``; tensors are made from the memoryview, and torch keeps a
    reference to it for as long as any tensor uses that storage, so an entry is free exactly when
    the pool holds the only reference (``sys.getrefcount(entry[1]) == 2``: the entry and the call's
    argument)."""

    def __init__(self, limit: int):
        self.limit, self.entries, self.lock = limit, [], threading.Lock()   # least recently used first

    @staticmethod
    def _free(entry: list) -> bool:
        return sys.getrefcount(entry[1]) == 2

    def _held(self) -> int:
        return sum(len(e[0]) for e in self.entries)

    def _trim(self, room: int) -> None:
        """Unmap unused entries, oldest first, until ``room`` more bytes fit within the limit."""
        for entry in list(self.entries):
            if self._held() + room <= self.limit:
                return
            if self._free(entry):
                self.entries.remove(entry)
                entry[1].release()
                entry[0].close()

    def take(self, nbytes: int) -> memoryview | None:
        """A memoryview of a mapping of at least ``nbytes`` (at most twice that) that no tensor
        uses, or of a new one; ``None`` when the pool is off or cannot make room within its limit."""
        if self.limit <= 0:
            if self.entries:                # left from before the pool was turned off: unmap the unused
                with self.lock:
                    self._trim(0)
            return None
        with self.lock:
            for entry in self.entries:
                if nbytes <= len(entry[0]) <= 2 * nbytes and self._free(entry):
                    self.entries.remove(entry)
                    self.entries.append(entry)
                    return entry[1]
            size = (nbytes + _PAGE - 1) & ~(_PAGE - 1)
            self._trim(size)
            if self._held() + size > self.limit:
                return None
            m = mmap.mmap(-1, size)
            if _madvise is not None:
                _madvise(_address(m), size, _MADV_HUGEPAGE)
            self.entries.append([m, memoryview(m)])
            return self.entries[-1][1]

    def set_limit(self, nbytes: int) -> None:
        with self.lock:
            self.limit = nbytes
            self._trim(0)

    def bytes(self) -> int:
        with self.lock:
            return self._held()


def _address(m: mmap.mmap) -> int:
    """The start address of a mapping (the temporary export is released before returning)."""
    view = (ctypes.c_char * 1).from_buffer(m)
    try:
        return ctypes.addressof(view)
    finally:
        del view


def _limit_from_environment() -> int:
    value = os.environ.get("SO3NET_POOL_BYTES", "").strip()
    if not value:
        return 1 << 30
    if not value.isdigit():
        raise ValueError(f"SO3NET_POOL_BYTES must be a number of bytes (0 turns the pool off), got {value!r}")
    return int(value)


_POOL = _Pool(_limit_from_environment())


def pool_limit() -> int:
    """The most bytes the pool of recycled CPU mappings may hold (0: off)."""
    return _POOL.limit


def set_pool_limit(nbytes: int) -> None:
    """Change the pool's limit; 0 turns it off (mappings in use stay valid; unused ones are unmapped)."""
    if not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"the pool limit is a number of bytes >= 0, got {nbytes!r}")
    _POOL.set_limit(nbytes)


def pool_bytes() -> int:
    """Bytes held by the pool now (in use or waiting for reuse)."""
    return _POOL.bytes()


def empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.empty(shape)``; on the CPU and from :data:`HUGE_PAGE_MIN_BYTES` on, on recycled
    mappings advised onto huge pages (module docstring)."""
    device = torch.device(device)
    numel = math.prod(shape)
    nbytes = numel * dtype.itemsize
    if device.type == "cpu" and nbytes >= HUGE_PAGE_MIN_BYTES:
        view = _POOL.take(nbytes)
        if view is not None:
            return torch.frombuffer(view, dtype=dtype, count=numel).view(*shape)
    return advise_huge_pages(torch.empty(*shape, dtype=dtype, device=device))
