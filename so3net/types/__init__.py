"""The user-facing SO(3) types of the talk (FastCG/GElib) and the CG product family.

``SO3type`` (τ), ``SO3part`` (``(b..., 2l+1, n)``), ``SO3vec`` (parts l = 0..L), the scalar types
``Rscalar``, ``Cscalar``, ``Ctensor``, the direct sum ``cat``/``oplus`` and the products
``CGproduct``, ``DiagCGproduct``, ``CGsquare``.
"""
from .sotype import SO3type
from .scalars import Rscalar, Cscalar, Ctensor
from .part import SO3part
from .vec import SO3vec, cat, oplus
from .products import CGproduct, DiagCGproduct, CGsquare, product_plan

__all__ = ["SO3type", "SO3part", "SO3vec", "Rscalar", "Cscalar", "Ctensor", "cat", "oplus",
           "CGproduct", "DiagCGproduct", "CGsquare", "product_plan"]
