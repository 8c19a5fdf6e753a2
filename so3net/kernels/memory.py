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
"""
from __future__ import annotations

import ctypes
import sys

import torch

__all__ = ["empty", "huge_pages_available", "HUGE_PAGE_MIN_BYTES"]

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


def empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.empty(shape)``; on the CPU and from :data:`HUGE_PAGE_MIN_BYTES` on huge pages."""
    return advise_huge_pages(torch.empty(*shape, dtype=dtype, device=device))
