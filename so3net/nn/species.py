"""Element lookup shared by the models and the trainer: atomic number -> row of a species tuple."""
from __future__ import annotations

import torch

__all__ = ["species_table", "species_rows"]


def species_table(species) -> torch.Tensor:
    """``table[Z]`` = position of atomic number Z in ``species``, -1 for elements not in it."""
    species = [int(z) for z in species]
    table = torch.full((max(species) + 1,), -1, dtype=torch.long)
    table[species] = torch.arange(len(species))
    return table


def species_rows(table: torch.Tensor, species: torch.Tensor, owner: str) -> torch.Tensor:
    """Rows of the atomic numbers ``species`` in ``table`` (:func:`species_table`); raises naming
    the unknown elements and ``owner``'s own (e.g. "this model's species (1, 6, 8)")."""
    species = species.to(torch.long)
    bad = (species < 0) | (species >= len(table))
    idx = table[species.clamp(0, len(table) - 1)]
    if bool((bad | (idx < 0)).any()):
        unknown = sorted(set(species[bad | (idx < 0)].tolist()))
        raise ValueError(f"atomic numbers {unknown} are not in {owner}")
    return idx
