"""CG product kernels: Triton kernels for CUDA tensors and their torch twins (CPU path, oracle).

Entry points live in :mod:`so3net.kernels.dispatch`; the backends are :mod:`.torch_cg` (always
importable; on CPU tensors its full, square and channel-wise products run the compiled C kernels
of :mod:`.native`) and :mod:`.triton_ops` (imported on first use).
"""
from .dispatch import (backend, cg_product, get_backend, message_passing_product, set_backend,
                       weighted_product)
from .rows import RowMap, message_rows
from .torch_cg import cg_product as torch_cg_product, cg_product_reference

__all__ = ["backend", "cg_product", "get_backend", "message_passing_product", "set_backend", "weighted_product",
           "RowMap", "message_rows", "torch_cg_product", "cg_product_reference"]
