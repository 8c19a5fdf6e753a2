"""The torch bridge: the CG kernels as ``torch.autograd.Function``s, for ordinary PyTorch code.

The kernels layer already wraps every backend in two autograd Functions whose backward passes are
again those Functions (:mod:`so3net.kernels.autograd`), so gradients of any order work
(``create_graph=True``). The bridge re-exports them on packed tensors (layout of
:mod:`so3net.plan`); the engine's own ops (:mod:`.products`) follow the same gradient rule.

- ``cg_product(x, y, plan)``: ``z (B, plan.dim_out)`` from ``x (B, plan.dim1)``, ``y (B, plan.dim2)``;
- ``weighted_product(x, y, plan, weights)``: with real per-sample weights ``(B, plan.num_weights)``;
- ``message_passing_product(edge, node, src, dst, plan, weights=None, num_nodes=None)``:
  ``out[i] = sum_{e: dst[e] = i} plan(edge[e], node[src[e]], weights[e])``.
"""
from __future__ import annotations

from ..kernels.dispatch import cg_product, message_passing_product, weighted_product

__all__ = ["cg_product", "weighted_product", "message_passing_product"]
