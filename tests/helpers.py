"""Helpers shared by several test modules: random molecules and tiny training configurations."""
import torch

from so3net.train import TrainConfig

TINY = {"num_cg_levels": 1, "num_channels": 2, "maxl": 1, "max_sh": 1, "readout_hidden": (8,)}


def molecules(counts, seed, dtype=torch.float64):
    """Random molecules of H, C, N, O with atoms at least 0.9 Å apart; flattened with a batch index."""
    g = torch.Generator().manual_seed(seed)
    pos, species = [], []
    for n in counts:
        atoms = []
        while len(atoms) < n:
            p = 1.6 * torch.randn(3, dtype=torch.float64, generator=g)
            if all(float((p - q).norm()) > 0.9 for q in atoms):
                atoms.append(p)
        pos.append(torch.stack(atoms))
        species.append(torch.tensor([1, 6, 7, 8])[torch.randint(0, 4, (n,), generator=g)])
    batch = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return torch.cat(pos).to(dtype), torch.cat(species), batch


def tiny_config(tmp_path, **changes) -> TrainConfig:
    """A tiny Cormorant trained on a few molecules of the shipped data, quietly, in ``tmp_path/run``."""
    settings = dict(n_train=12, n_valid=4, n_test=4, epochs=2, batch_size=4, run_dir=str(tmp_path / "run"),
                    progress=False, model=dict(TINY))
    settings.update(changes)
    return TrainConfig(**settings)
