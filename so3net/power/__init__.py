"""Symmetric tensor powers: ``CGpower``, their compiled programs, and MACE's weighted symmetric
contraction. See :mod:`so3net.power.program` for the construction and the output layout."""
from .characters import sym_power_multiplicities, sym_power_character, type_character
from .program import PowerProgram, power_program
from .cgpower import CGpower

__all__ = ["CGpower", "PowerProgram", "power_program", "sym_power_multiplicities",
           "sym_power_character", "type_character"]
