"""Neighbour lists for many molecules packed end to end, without an all-atoms N x N matrix.

Convention: ``radius_graph`` returns directed edges ``(src, dst)`` (int64, shape (E,)) for every
ordered pair of distinct atoms of the *same* molecule with ``|r_src - r_dst| < cutoff``; both
directions are present, there are no self loops, and edges are sorted by ``(dst, src)``.
Messages flow from ``src`` to ``dst``. Indices only: no gradient flows through the list (compute
the edge vectors ``positions[src] - positions[dst]`` afterwards, with autograd, as needed).
"""
import torch

#: molecules up to this many atoms use the exact per-molecule pair list, larger ones cells
AUTO_CELL_THRESHOLD = 256


def _pairs_within_molecules(counts, starts):
    """All ordered pairs (src, dst), src != dst, inside each molecule, sorted by (dst, src) when
    the molecules' atoms are contiguous and in order: sum of n_i^2 work, not N^2."""
    pair_counts = counts * counts
    molecule = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), pair_counts)
    first_pair = torch.cumsum(pair_counts, 0) - pair_counts
    k = torch.arange(int(pair_counts.sum()), device=counts.device) - first_pair[molecule]
    n, start = counts[molecule], starts[molecule]
    src, dst = start + k % n, start + k // n
    keep = src != dst
    return src[keep], dst[keep]


_OFFSETS = torch.stack(torch.meshgrid(*[torch.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)


def _pairs_from_cells(positions, batch, cutoff):
    """Candidate pairs from a cell list with cells of side ``cutoff`` (27 neighbouring cells),
    each molecule with its own grid so that molecules never share a cell."""
    n_mol = int(batch.max()) + 1
    low = torch.full((n_mol, 3), float("inf"), dtype=positions.dtype, device=positions.device)
    low = low.scatter_reduce(0, batch[:, None].expand(-1, 3), positions, "amin")
    cell = torch.floor((positions - low[batch]) / cutoff).long() + 1      # >= 1: room for the -1 shift
    dims = cell.max(0).values + 2                                          # room for the +1 shift
    def key(c, b):
        return ((b * dims[0] + c[:, 0]) * dims[1] + c[:, 1]) * dims[2] + c[:, 2]
    atom_key = key(cell, batch)
    order = torch.argsort(atom_key)
    cells, cell_size = torch.unique_consecutive(atom_key[order], return_counts=True)
    cell_start = torch.cumsum(cell_size, 0) - cell_size
    src, dst = [], []
    atoms = torch.arange(len(positions), device=positions.device)
    for offset in _OFFSETS.to(positions.device):
        neighbour = key(cell + offset, batch)
        slot = torch.searchsorted(cells, neighbour).clamp(max=len(cells) - 1)
        found = cells[slot] == neighbour
        i, slot = atoms[found], slot[found]
        size = cell_size[slot]
        i = torch.repeat_interleave(i, size)
        first = torch.repeat_interleave(cell_start[slot] - (torch.cumsum(size, 0) - size), size)
        j = order[first + torch.arange(int(size.sum()), device=positions.device)]
        keep = i != j
        src.append(j[keep])
        dst.append(i[keep])
    return torch.cat(src), torch.cat(dst)


def radius_graph(positions, batch, cutoff, method="auto"):
    """Edges ``(src, dst)`` between atoms of one molecule closer than ``cutoff`` (see module doc).

    ``positions`` (N, 3) float tensor; ``batch`` (N,) int64 molecule index of each atom (any order,
    need not be sorted). ``method``: ``"pairs"`` (exact pair list per molecule, cost sum n_i^2),
    ``"cells"`` (cell list, cost ~ N x neighbours), or ``"auto"`` (pairs unless a molecule has more
    than ``AUTO_CELL_THRESHOLD`` atoms).
    """
    if positions.ndim != 2 or positions.shape[1] != 3 or batch.shape != positions.shape[:1]:
        raise ValueError(f"radius_graph expects positions (N, 3) and batch (N,), got "
                         f"{tuple(positions.shape)} and {tuple(batch.shape)}")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if method not in ("auto", "pairs", "cells"):
        raise ValueError(f"method must be 'auto', 'pairs' or 'cells', got {method!r}")
    empty = torch.zeros(0, dtype=torch.long, device=positions.device)
    if len(positions) == 0:
        return empty, empty.clone()
    with torch.no_grad():
        pos, batch = positions.detach(), batch.long()
        counts = torch.bincount(batch)
        if method == "auto":
            method = "cells" if int(counts.max()) > AUTO_CELL_THRESHOLD else "pairs"
        in_order = method == "pairs" and bool((batch[1:] >= batch[:-1]).all())
        if in_order:
            src, dst = _pairs_within_molecules(counts, torch.cumsum(counts, 0) - counts)
        elif method == "pairs":
            order = torch.argsort(batch, stable=True)
            src, dst = _pairs_within_molecules(counts, torch.cumsum(counts, 0) - counts)
            src, dst = order[src], order[dst]
        else:
            src, dst = _pairs_from_cells(pos, batch, cutoff)
        close = (pos[src] - pos[dst]).norm(dim=1) < cutoff
        src, dst = src[close], dst[close]
        if not in_order:
            sort = torch.argsort(dst * len(pos) + src)
            src, dst = src[sort], dst[sort]
        return src, dst
