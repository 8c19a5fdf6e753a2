"""Printing in the talk's (FastCG/GElib) format (private).

A part prints one row per fragment, the 2l+1 entries m = -l..l left to right; complex entries as
``(re,im)`` with C++ ``cout``'s default 6 significant digits, real entries as plain numbers::

    Part l=1:
    [ (1.61201,0.399771) (1.3828,0.0523187) (-0.904146,1.87065) ]

A batched object prints ``Batch i:`` (``Batch (i,j):`` for several batch axes) before each
sample (the first ``MAX_SAMPLES`` of them).
"""
from __future__ import annotations

import itertools

import torch

MAX_SAMPLES = 8


def _number(z, is_complex: bool) -> str:
    if is_complex:
        return f"({z.real:g},{z.imag:g})"
    return f"{z:g}"


def rows(part: torch.Tensor) -> list[str]:
    """Rows of one unbatched part tensor (2l+1, n): one row per fragment."""
    values = part.detach().cpu().resolve_conj()
    values = values.to(torch.complex128 if values.is_complex() else torch.float64).numpy()
    is_complex = part.is_complex()
    return ["[ " + " ".join(_number(z, is_complex) for z in values[:, i]) + " ]"
            for i in range(values.shape[1])]


def format_samples(batch: tuple[int, ...], body) -> str:
    """Join ``body(index)`` over the batch indices, with headers when there is a batch."""
    if not batch:
        return body(())
    indices = list(itertools.islice(itertools.product(*(range(s) for s in batch)), MAX_SAMPLES))
    total = 1
    for s in batch:
        total *= s
    blocks = [f"Batch {_index(i)}:\n{body(i)}" for i in indices]
    if total > len(indices):
        blocks.append(f"... ({total - len(indices)} more samples)")
    return "\n".join(blocks) if blocks else f"(empty batch {batch})"


def _index(i: tuple[int, ...]) -> str:
    return str(i[0]) if len(i) == 1 else "(" + ",".join(str(k) for k in i) + ")"


def part_block(l: int, part: torch.Tensor) -> str:
    return "\n".join([f"Part l={l}:"] + rows(part))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
