"""Cormorant training step at the paper's QM9 hyperparameters, so3net against the original code in
the same process on the same molecules.

so3net: ``Cormorant("qm9")`` (4 levels, maxl 3, max_sh 3, 10 channels, basis (3, 3), learned soft
cutoff 1.73 Å; neighbour list 3 Å), float32. The original: risilab/cormorant's ``CormorantQM9``
with the defaults of its ``examples/train_qm9.py`` (the same hyperparameters; dense all-pairs
tensors, its own CG library, input MPNN and PMLP read-out), float32. Molecules: ``--molecules``
random QM9-sized molecules, 10–28 atoms of H C N O F (a heavy-atom random walk at 1.5 Å, hydrogens
at 1.09 Å, no pair under 1 Å; fixed seed). One step = forward (energies), MSE loss, backward (the
gradients of all parameters), AMSGrad update; median of ``--steps`` steps after two warm-ups.

The original is compared only when it is importable; this script installs nothing. To get it:

    git clone https://github.com/risilab/cormorant /tmp/cormorant-orig
    pip install --no-deps --no-build-isolation -e /tmp/cormorant-orig

(it needs only torch, numpy and scipy, which so3net already pulls in; it imports on torch 2.x as is,
with a few ``SyntaxWarning``s about ``is`` with a literal).

OpenMP threads wait as the OpenMP runtime does by default (they spin a while between parallel
regions, then sleep), as a user's process gets them; ``--omp-wait-policy PASSIVE`` (sleep at once:
every mid-size op then wakes the second thread, 40-50 ms more per 2-thread so3net step) or
``ACTIVE`` sets ``OMP_WAIT_POLICY`` for both models, and the header prints the setting. On a CPU
that other processes share, spinning threads can make a 2-thread step many times slower: there
use PASSIVE or one thread.

Also printed: one level's message sum Σ_j (s_ij ⊗ Y_ij) ⊗cg F_j (forward + backward) on the model's
edges (one padded list) by the three evaluations: the compiled fused kernel that the CG layers run
under the "native" backend (``neighbour_message_product`` of ``EdgeFactors``), the outer strategy's
torch ops (backend "torch": Υ formed, batched matmul, sparse contraction) and the compiled kernels'
per-edge product (``torch_cg.NATIVE.message_passing_product``, Υ formed per edge; what
``dispatch.message_passing_product`` would run were it not routed to the outer strategy).
On CUDA (when available): so3net's step time and molecules per second on the GPU (Triton kernels).

Run: ``python benches/bench_cormorant.py [--molecules 25] [--steps 10] [--original-steps 3] [--threads 2]
[--omp-wait-policy PASSIVE|ACTIVE]``.
"""
from __future__ import annotations

import os

import argparse  # noqa: E402
import sys  # noqa: E402

if __name__ == "__main__":   # read when torch starts its OpenMP runtime: set before importing it
    for i, word in enumerate(sys.argv):
        if word.startswith("--omp-wait-policy="):
            os.environ["OMP_WAIT_POLICY"] = word.split("=", 1)[1]
        elif word == "--omp-wait-policy" and i + 1 < len(sys.argv):
            os.environ["OMP_WAIT_POLICY"] = sys.argv[i + 1]
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from so3net.kernels import backend as kernels_backend, dispatch, message, torch_cg  # noqa: E402
from so3net.kernels.native import cpu_summary  # noqa: E402
from so3net.models import Cormorant  # noqa: E402
from so3net.plan import cg_plan  # noqa: E402

SPECIES = (1, 6, 7, 8, 9)


def random_molecules(count: int, sizes: tuple[int, int] = (10, 28), seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` QM9-like molecules ``(Z, positions Å)`` with sizes uniform in ``sizes`` (inclusive)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        atoms = int(rng.integers(sizes[0], sizes[1] + 1))
        heavy = max(1, min(9, round(atoms * 0.45)))
        pos = [np.zeros(3)]
        while len(pos) < heavy:
            step = rng.normal(size=3)
            p = pos[rng.integers(len(pos))] + 1.5 * step / np.linalg.norm(step)
            if min(np.linalg.norm(p - q) for q in pos) > 1.3:
                pos.append(p)
        z = list(rng.choice([6, 6, 6, 7, 8, 9], size=heavy))
        while len(pos) < atoms:
            step = rng.normal(size=3)
            p = pos[rng.integers(heavy)] + 1.09 * step / np.linalg.norm(step)
            if min(np.linalg.norm(p - q) for q in pos) > 1.0:
                pos.append(p)
                z.append(1)
        out.append((np.array(z), np.array(pos)))
    return out


def flatten(mols, device, dtype=torch.float32):
    """so3net's input: flattened ``(positions (N, 3), species (N,), batch (N,))``."""
    pos = torch.tensor(np.concatenate([p for _, p in mols]), dtype=dtype, device=device)
    species = torch.tensor(np.concatenate([z for z, _ in mols]), device=device)
    batch = torch.repeat_interleave(torch.arange(len(mols), device=device),
                                    torch.tensor([len(z) for z, _ in mols], device=device))
    return pos, species, batch


def padded(mols, dtype=torch.float32) -> dict:
    """The original's input: molecules padded to the largest, as its ``collate_fn`` builds them."""
    n = max(len(z) for z, _ in mols)
    charges = torch.zeros(len(mols), n, dtype=torch.long)
    pos = torch.zeros(len(mols), n, 3, dtype=dtype)
    for i, (z, p) in enumerate(mols):
        charges[i, :len(z)] = torch.as_tensor(z)
        pos[i, :len(z)] = torch.as_tensor(p, dtype=dtype)
    atom_mask = charges > 0
    return {"positions": pos, "charges": charges, "one_hot": charges[..., None] == torch.tensor(SPECIES),
            "atom_mask": atom_mask, "edge_mask": atom_mask[:, None] * atom_mask[:, :, None]}


def original_model():
    """risilab/cormorant's ``CormorantQM9`` with the defaults of its ``examples/train_qm9.py``, or None."""
    if importlib.util.find_spec("cormorant") is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        from cormorant.models import CormorantQM9
    return CormorantQM9(maxl=[3], max_sh=[3], num_cg_levels=4, num_channels=[10], num_species=len(SPECIES),
                        cutoff_type=["learn"], hard_cut_rad=[1.73], soft_cut_rad=[1.73], soft_cut_width=[0.2],
                        weight_init="rand", level_gain=[10.0], charge_power=2, basis_set=[3, 3],
                        charge_scale=max(SPECIES), gaussian_mask=False, top="linear", input="linear",
                        num_mpnn_layers=1, device=torch.device("cpu"), dtype=torch.float32)


def time_steps(model, call, num_molecules: int, steps: int, sync, warmup: int = 2) -> list[float]:
    """Seconds of each of ``steps`` training steps of ``model`` (``call(model)`` -> energies (M,))."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    target = torch.randn(num_molecules, generator=torch.Generator().manual_seed(1))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ((call(model) - target.to(next(model.parameters()).device)) ** 2).mean()
        loss.backward()
        opt.step()

    return timed(step, steps, sync, warmup)


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


def aggregation_peer(model, inputs, repeats: int = 3) -> tuple[float, float, float]:
    """Seconds for forward + backward of one level's message sum ``Σ_j (s_ij ⊗ Y_ij) ⊗cg F_j`` on the
    model's edges (one padded list; channel-wise plan, C channels, l <= maxl on both sides), random
    complex64 operands, gradients of the scalars, harmonics and node features: the compiled fused
    kernel (backend "native"), the outer strategy's torch ops (backend "torch") and the compiled
    kernels' per-edge product (``torch_cg.NATIVE``), same inputs."""
    pos, species, batch = inputs
    cfg = model.config
    nbrs = model.neighbours(pos, batch)
    dst, slot = nbrs.mask.nonzero(as_tuple=True)
    src = nbrs.src[dst, slot]
    C, L1 = cfg.num_channels, cfg.max_sh + 1
    plan = cg_plan((C,) * L1, (C,) * (cfg.maxl + 1), cfg.maxl, "diag")
    g = torch.Generator().manual_seed(0)
    scalars = (torch.randn(*nbrs.src.shape, L1, C, dtype=torch.complex64, generator=g)
               * nbrs.mask[..., None, None]).requires_grad_(True)
    harmonics = torch.randn(*nbrs.src.shape, L1 * L1, dtype=torch.complex64, generator=g).requires_grad_(True)
    node = torch.randn(pos.shape[0], plan.dim2, dtype=torch.complex64, generator=g).requires_grad_(True)
    leaves = (scalars, harmonics, node)

    def by_backend(name):
        def run():
            with kernels_backend(name):
                out = message.neighbour_message_product(message.EdgeFactors(scalars, harmonics), node, nbrs, plan)
            torch.autograd.grad(out.abs().square().sum(), leaves)
        return run

    def per_edge():
        edge = message.EdgeFactors(scalars, harmonics).materialize()[dst, slot].reshape(len(dst), plan.dim1)
        out = torch_cg.NATIVE.message_passing_product(edge, node, src, dst, plan, None, pos.shape[0])
        torch.autograd.grad(out.abs().square().sum(), leaves)
    return tuple(min(timed(run, repeats, lambda: None)) for run in (by_backend("native"), by_backend("torch"), per_edge))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--molecules", type=int, default=25)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--original-steps", type=int, default=3, help="timed steps of the original (0: skip it)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for both models")
    ap.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE"], default=None,
                    help="OMP_WAIT_POLICY for both models (default: the OpenMP runtime's own, as users get it)")
    ap.add_argument("--gpu-molecules", type=int, default=250, help="second, larger batch on the GPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mols = random_molecules(args.molecules)
    sizes = [len(z) for z, _ in mols]
    torch.manual_seed(0)
    model = Cormorant("qm9")
    inputs = flatten(mols, "cpu")
    nbrs = model.neighbours(inputs[0], inputs[2])
    print(f"{args.molecules} random QM9-sized molecules, {min(sizes)}-{max(sizes)} atoms ({sum(sizes)} in all), "
          f"float32, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (OpenMP default)')}, "
          f"load average {os.getloadavg()[0]:.2f}; CPU: {cpu_summary()}")
    lists = nbrs.buckets(model.neighbour_buckets)
    print(f"so3net Cormorant('qm9'): {sum(p.numel() for p in model.parameters())} parameters, "
          f"{nbrs.num_edges} edges (cutoff {model.config.hard_cut_rad} Å, max {nbrs.src.shape[1]} neighbours); "
          f"padded slots {nbrs.src.numel()} in one list, {sum(b.src.numel() for b in lists)} in the model's "
          f"{len(lists)} lists by neighbour count {[tuple(b.src.shape) for b in lists]}")
    times = time_steps(model, lambda m: m(*inputs), len(mols), args.steps, lambda: None)
    ours = statistics.median(times)
    print(f"so3net   train step median {ours * 1e3:9.1f} ms  min {min(times) * 1e3:9.1f} ms  "
          f"{len(mols) / ours:7.1f} molecules/s")
    if message.fused(inputs[0].to(torch.complex64)):
        fused_s, outer_s, edge_s = aggregation_peer(model, inputs)
        print(f"one level's message sum, fwd+bwd: fused kernel {fused_s * 1e3:7.1f} ms, outer strategy's torch ops "
              f"{outer_s * 1e3:7.1f} ms ({outer_s / fused_s:.1f}x), compiled per-edge product "
              f"{edge_s * 1e3:7.1f} ms ({edge_s / fused_s:.1f}x)")
    else:
        print(f"one level's message sum: the fused kernel needs the 'native' backend (in force: {dispatch.backend()})")
    original = original_model() if args.original_steps else None
    if original is None:
        print("original: not importable (see this script's docstring for how to install it); no ratio")
    else:
        torch.manual_seed(0)
        data = padded(mols)
        times = time_steps(original, lambda m: m(data), len(mols), args.original_steps, lambda: None, warmup=1)
        theirs = statistics.median(times)
        print(f"original train step median {theirs * 1e3:9.1f} ms  min {min(times) * 1e3:9.1f} ms  "
              f"({sum(p.numel() for p in original.parameters())} parameters, all pairs)")
        print(f"so3net vs original, same molecules, same process, {torch.get_num_threads()} threads: "
              f"{theirs / ours:.1f}x")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for count in (args.molecules, args.gpu_molecules):
            batch = mols if count == len(mols) else (mols * (count // len(mols) + 1))[:count]
            gpu_inputs = flatten(batch, "cuda")
            torch.manual_seed(0)
            gpu_model = Cormorant("qm9").cuda()
            times = time_steps(gpu_model, lambda m: m(*gpu_inputs), count, args.steps, torch.cuda.synchronize)
            med = statistics.median(times)
            print(f"cuda {name}: {count} molecules, train step median {med * 1e3:8.2f} ms  min {min(times) * 1e3:8.2f} ms  "
                  f"{count / med:9.1f} molecules/s")
    else:
        print("cuda: not available on this machine")


if __name__ == "__main__":
    main()
