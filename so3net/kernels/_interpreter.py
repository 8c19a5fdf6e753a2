"""Compatibility of the Triton interpreter (``TRITON_INTERPRET=1``) with NumPy >= 2.3.

Triton 3.x's interpreter stores scalars as one-element 1-d arrays and converts loop bounds with
``int(array)``, which NumPy 2.3+ rejects ("only 0-dimensional arrays can be converted to Python
scalars"); kernels whose loop bounds are loaded from tables (all of ours) then fail to interpret.
:func:`install` wraps the interpreter's tensor patching so that ``__index__`` reads the single
element explicitly. It also turns off the interpreter's int32 overflow sanitiser (a debugging aid
that multiplies the cost of every integer operation several times; compiled kernels never run
it unless built with ``debug=True``). It changes nothing when the interpreter is not in use, and
is idempotent.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["install"]


def _needs_fix() -> bool:
    try:
        int(np.ones(1, dtype=np.int32))
    except TypeError:
        return True
    return False


def install() -> None:
    """Patch ``triton.runtime.interpreter`` if this NumPy needs it (see the module docstring)."""
    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    if builder.options.sanitize_overflow:
        builder.options = dataclasses.replace(builder.options, sanitize_overflow=False)
    original = interpreter._patch_lang_tensor
    if getattr(original, "_so3net_fixed", False) or not _needs_fix():
        return

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))

    patch_lang_tensor._so3net_fixed = True
    interpreter._patch_lang_tensor = patch_lang_tensor
