"""Cormorant training step at the paper's QM9 hyperparameters (4 levels, maxl 3, max_sh 3, 10 channels,
basis (3, 3), learned soft cutoff 1.73 Å; neighbour list 3 Å), float32, 25 QM9-sized molecules.

One step = forward (energies), MSE loss, backward, AMSGrad update. Molecules: the first ``--molecules``
QM9 molecules with ``--atoms`` atoms from the qm9pack wheel when it is installed, else random
QM9-like geometries (a heavy-atom random walk at 1.5 Å, hydrogens at 1.09 Å, no pair under 1 Å).

Peers: the original implementation (dense all-pairs, dense Kronecker products) is not installed
here; its step time on this 2-core machine, 53 s, is quoted from issue 6. Measured in the same
process: one CG level's message aggregation Σ_j Υ_ij ⊗cg F_j (forward + backward) by the kernels'
fused ``message_passing_product`` (per edge; the Triton kernel on CUDA, the torch twin on CPU),
against the layers' outer-product-then-contraction.
On CUDA (when available): step time, molecules per second and the GPU's name.

OpenMP threads wait passively here (``OMP_WAIT_POLICY=PASSIVE`` unless set otherwise): on a CPU that
other processes share, spinning threads make a 2-thread step up to ten times slower.

Run: ``python benches/bench_cormorant.py [--molecules 25] [--atoms 18] [--steps 10] [--threads N]``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP runtime

import argparse  # noqa: E402
import ast  # noqa: E402
import csv  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from so3net.kernels.dispatch import message_passing_product  # noqa: E402
from so3net.models import Cormorant  # noqa: E402
from so3net.nn import aggregate_messages, edge_harmonics, message_plan, packed_to_mcn  # noqa: E402

ORIGINAL_STEP_S = 53.0   # issue 6: the original Cormorant, 2 cores, float32, same batch
SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def qm9_molecules(count: int, atoms: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    spec = importlib.util.find_spec("qm9pack")  # found without importing (its __init__ needs pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "qm9_part1.csv")
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if int(row["N_atoms"]) == atoms:
                z = np.array([SYMBOLS[s] for s in ast.literal_eval(row["Elements"])])
                out.append((z, np.array(json.loads(row["XYZ_Ang"]))))
                if len(out) == count:
                    return out
    return None


def random_molecules(count: int, atoms: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        heavy = max(1, round(atoms * 0.45))
        pos = [np.zeros(3)]
        while len(pos) < heavy:
            step = rng.normal(size=3)
            p = pos[rng.integers(len(pos))] + 1.5 * step / np.linalg.norm(step)
            if min(np.linalg.norm(p - q) for q in pos) > 1.3:
                pos.append(p)
        z = list(rng.choice([6, 6, 6, 7, 8], size=heavy))
        while len(pos) < atoms:
            step = rng.normal(size=3)
            p = pos[rng.integers(heavy)] + 1.09 * step / np.linalg.norm(step)
            if min(np.linalg.norm(p - q) for q in pos) > 1.0:
                pos.append(p)
                z.append(1)
        out.append((np.array(z), np.array(pos)))
    return out


def flatten(mols, device, dtype=torch.float32):
    pos = torch.tensor(np.concatenate([p for _, p in mols]), dtype=dtype, device=device)
    species = torch.tensor(np.concatenate([z for z, _ in mols]), device=device)
    batch = torch.repeat_interleave(torch.arange(len(mols), device=device),
                                    torch.tensor([len(z) for z, _ in mols], device=device))
    return pos, species, batch


def time_steps(model, inputs, steps: int, sync) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    target = torch.randn(int(inputs[2].max()) + 1, device=inputs[0].device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((model(*inputs) - target) ** 2).mean()
        loss.backward()
        opt.step()

    return timed(step, steps, sync, warmup=2)


def timed(fn, repeats: int, sync, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return times


def aggregation_peer(model, inputs, repeats: int = 3) -> tuple[float, float]:
    """Seconds for forward + backward of one level-2 aggregation Σ_j Υ_ij ⊗cg F_j: the kernels'
    fused ``message_passing_product`` (per edge) against the layers' outer product + contraction."""
    pos, species, batch = inputs
    nbrs = model.neighbours(pos, batch)
    C, L = model.config.num_channels, model.config.max_sh
    tau = (C,) * (model.config.maxl + 1)
    plan = message_plan((C,) * (L + 1), tau, model.config.maxl)
    g = torch.Generator(device=pos.device).manual_seed(0)
    vec, _ = nbrs.vectors(pos, far=2 * model.config.hard_cut_rad + 1)
    Y = edge_harmonics(vec, L)
    scalars = torch.randn(*nbrs.src.shape, L + 1, C, dtype=torch.complex64, generator=g, device=pos.device)
    scalars = (scalars * nbrs.mask[..., None, None]).requires_grad_(True)
    x = torch.randn(pos.shape[0], plan.dim2, dtype=torch.complex64, generator=g, device=pos.device).requires_grad_(True)
    dst, slot = nbrs.mask.nonzero(as_tuple=True)
    src = nbrs.src[dst, slot]
    sync = torch.cuda.synchronize if pos.is_cuda else (lambda: None)

    def per_edge():
        s, y = scalars[dst, slot], Y[dst, slot]
        ups = torch.cat([(s[:, l, None, :] * y[:, l * l:(l + 1) ** 2, None]).reshape(len(dst), -1)
                         for l in range(L + 1)], 1)
        message_passing_product(ups, x, src, dst, plan).abs().square().sum().backward()

    def layers():
        x_src = nbrs.gather(packed_to_mcn(x, tau).permute(1, 2, 0).contiguous(), dim=1)
        aggregate_messages(scalars, Y, x_src, plan).abs().square().sum().backward()

    return min(timed(per_edge, repeats, sync)), min(timed(layers, repeats, sync))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--molecules", type=int, default=25)
    ap.add_argument("--atoms", type=int, default=18)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--gpu-molecules", type=int, default=250, help="second, larger batch on the GPU")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mols = qm9_molecules(args.molecules, args.atoms)
    source = "qm9pack" if mols else "random QM9-like"
    mols = mols or random_molecules(args.molecules, args.atoms)
    torch.manual_seed(0)
    model = Cormorant("qm9")
    inputs = flatten(mols, "cpu")
    nbrs = model.neighbours(inputs[0], inputs[2])
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Cormorant qm9 preset: {n_params} parameters; {args.molecules} {source} molecules of {args.atoms} atoms, "
          f"{nbrs.num_edges} edges (cutoff {model.config.hard_cut_rad} Å, max {nbrs.src.shape[1]} neighbours), float32")
    times = time_steps(model, inputs, args.steps, lambda: None)
    med = statistics.median(times)
    print(f"cpu  {torch.get_num_threads()} threads (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}): train step median {med * 1e3:8.1f} ms  min {min(times) * 1e3:8.1f} ms  "
          f"{args.molecules / med:7.1f} molecules/s  vs original {ORIGINAL_STEP_S:.0f} s (quoted): {ORIGINAL_STEP_S / med:6.0f}x")
    edge_s, ours_s = aggregation_peer(model, inputs)
    print(f"cpu  one level's aggregation fwd+bwd: kernels' message_passing_product {edge_s * 1e3:8.1f} ms, "
          f"outer product + contraction {ours_s * 1e3:8.1f} ms: {edge_s / ours_s:5.1f}x")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for count in (args.molecules, args.gpu_molecules):
            batch = mols if count == len(mols) else (mols * (count // len(mols) + 1))[:count]
            gpu_inputs = flatten(batch, "cuda")
            torch.manual_seed(0)
            gpu_model = Cormorant("qm9").cuda()
            times = time_steps(gpu_model, gpu_inputs, args.steps, torch.cuda.synchronize)
            med = statistics.median(times)
            print(f"cuda {name}: {count} molecules, train step median {med * 1e3:8.2f} ms  min {min(times) * 1e3:8.2f} ms  "
                  f"{count / med:9.1f} molecules/s")
            edge_s, ours_s = aggregation_peer(gpu_model, gpu_inputs)
            print(f"cuda {name}: {count} molecules, one level's aggregation fwd+bwd: message_passing_product "
                  f"{edge_s * 1e3:8.2f} ms, outer product + contraction {ours_s * 1e3:8.2f} ms: {edge_s / ours_s:5.1f}x")
    else:
        print("cuda: not available on this machine")


if __name__ == "__main__":
    main()
