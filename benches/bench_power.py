"""Symmetric tensor powers: program flops against the naive repeated product, and MACE's weighted
symmetric contraction against MACE's own implementation (CPU) and cuEquivariance (GPU).

1. Flops. For each (tau, k) the compiled ``power_program`` (unordered multisets, shared
   intermediates, exact basis) against the naive repeated full CGproduct ((v ⊗ v) ⊗ v)... with the
   same l caps, per sample, from ``CGPlan.flops()``; also the number of output fragments of each.
2. Contraction, MACE configuration: 128 channels of l <= 2, correlation 3, output l <= 2, 3
   elements, per-element weights. so3net (complex64, torch twin kernels through the torch bridge)
   beside ``mace.modules.symmetric_contraction.SymmetricContraction`` (float32, real basis) with
   irreps ``128x0e+128x1e+128x2e`` (all even parity, so that its path set is the SO(3) one; MACE
   keeps redundant paths, our program keeps exactly the character multiplicities — see the
   weight counts printed). Forward and forward+backward, median of ``--repeats`` runs, wall time and
   process CPU time (the CPU time is the meaningful number on a shared machine).
   MACE is optional: ``pip install --no-deps mace-torch torch_ema torchmetrics lightning_utilities``
   installs it without touching torch (it imports e3nn and opt_einsum_fx).
3. GPU (when CUDA is available): the same contraction on the GPU beside
   ``cuequivariance_torch.SymmetricContraction`` (layout ir_mul, which is our packed layout),
   when cuequivariance_torch is installed.

Run: ``python benches/bench_power.py [--batch 512] [--repeats 5] [--threads N] [--skip-flops]``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from so3net.power import power_program
from so3net.power.contraction import SymmetricContraction, contraction_program

FLOP_CASES = [((8, 8, 8), 3), ((8, 8, 8), 2), ((4, 4, 4), 4), ((16, 16, 16), 2), ((1, 1, 1), 3),
              ((1, 1, 1), 4), ((2, 2, 2, 2), 3), ((32,), 3)]


def flops_table() -> None:
    print("# flops per sample: compiled Sym^k program vs naive repeated full CGproduct (same l caps)")
    print(f"{'tau':>14} {'k':>2} {'program':>12} {'naive':>12} {'ratio':>6} {'frags':>7} {'naive frags':>11} "
          f"{'compile s':>9}")
    for tau, k in FLOP_CASES:
        start = time.perf_counter()
        program = power_program(tau, (k,))
        compile_s = time.perf_counter() - start
        naive = program.naive_flops()
        print(f"{str(tau):>14} {k:>2} {program.flops():>12} {naive:>12} {naive / program.flops():>6.2f} "
              f"{sum(program.out_type(k)):>7} {sum(program.naive_plans[-1].tau_out):>11} {compile_s:>9.2f}")


def timed(fn, repeats: int, sync=lambda: None) -> tuple[float, float]:
    """Median wall and process CPU seconds of ``fn`` after one warm-up call."""
    fn()
    sync()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        sync()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def steps(forward, inputs):
    """(forward only, forward + backward) closures; the backward seeds the sum of |out|^2."""
    def fwd():
        with torch.no_grad():
            forward()

    def fwd_bwd():
        out = forward()
        torch.autograd.grad(out.abs().pow(2).sum(), inputs)
    return fwd, fwd_bwd


def ours_case(batch, channels, elements, device):
    module = SymmetricContraction(channels, 2, 3, 2, num_elements=elements).to(device)
    x = torch.randn(batch, 9 * channels, dtype=torch.complex64, device=device, requires_grad=True)
    species = torch.randint(0, elements, (batch,), device=device)
    counts = [sum(module.program.out_type(j)) for j in module.program.degrees]
    return steps(lambda: module(x, species), [x, *module.weights]), counts


def mace_case(batch, channels, elements):
    from e3nn import o3
    from mace.modules.symmetric_contraction import SymmetricContraction as MaceSC
    irreps = o3.Irreps(f"{channels}x0e+{channels}x1e+{channels}x2e")
    module = MaceSC(irreps, irreps, correlation=3, num_elements=elements)
    x = torch.randn(batch, channels, 9, requires_grad=True)
    y = torch.nn.functional.one_hot(torch.randint(0, elements, (batch,)), elements).float()
    counts = [sum(p.shape[1] for c in module.contractions for p in c.parameters()), mace_independent_counts(module)]
    return steps(lambda: module(x, y), [x, *module.parameters()]), counts


def mace_independent_counts(module) -> list[list[int]]:
    """Rank of MACE's coupling tensors U_nu after symmetrising over their nu input axes, per output
    irrep and degree: the number of linearly independent functions its weights can reach."""
    import itertools
    ranks = []
    for c in module.contractions:
        row = []
        for nu in range(1, 4):
            U = getattr(c, f"U_matrix_{nu}").double()
            lead, n = U.dim() - 1 - nu, U.shape[-1]
            S = sum(U.permute(*range(lead), *[lead + p for p in perm], U.dim() - 1)
                    for perm in itertools.permutations(range(nu)))
            s = torch.linalg.svdvals(S.reshape(-1, n))
            row.append(int((s > 1e-6 * s[0]).sum()))
        ranks.append(row)
    return ranks


def cueq_case(batch, channels, elements):
    import cuequivariance as cue
    import cuequivariance_torch as cuet
    irreps = channels * cue.Irreps("SO3", "0 + 1 + 2")
    module = cuet.SymmetricContraction(irreps, irreps, 3, elements, layout_in=cue.ir_mul, layout_out=cue.ir_mul,
                                       dtype=torch.float32, device="cuda")
    x = torch.randn(batch, irreps.dim, device="cuda", requires_grad=True)
    indices = torch.randint(0, elements, (batch,), device="cuda")
    return steps(lambda: module(x, indices), [x, *module.parameters()])


def report(name, pair, repeats, sync=lambda: None):
    (fw, fc), (bw, bc) = (timed(step, repeats, sync) for step in pair)
    print(f"{name:<36} fwd {fw * 1e3:8.1f} ms wall {fc * 1e3:8.1f} ms cpu | fwd+bwd {bw * 1e3:8.1f} ms wall "
          f"{bc * 1e3:8.1f} ms cpu")
    return fw, fc, bw, bc


def contraction_cpu(batch, repeats) -> None:
    channels, elements = 128, 3
    print(f"\n# weighted symmetric contraction, CPU, {channels}x(l<=2), correlation 3, out l<=2, "
          f"{elements} elements, batch {batch}, {torch.get_num_threads()} threads")
    pair, counts = ours_case(batch, channels, elements, "cpu")
    print(f"so3net weights per channel and element, degrees 1..3: {counts} (character multiplicities)")
    ours = report("so3net (complex64, torch twin)", pair, repeats)
    try:
        mace_pair, mace_counts = mace_case(batch, channels, elements)
    except ImportError as err:
        print(f"MACE not measured ({err}); pip install --no-deps mace-torch torch_ema torchmetrics "
              f"lightning_utilities")
        return
    program = contraction_program(2, 3, 2)
    ours_by_L = [[program.out_type(j)[L] for j in program.degrees] for L in range(3)]
    print(f"MACE weights per channel and element, all degrees: {mace_counts[0]} (so3net: {sum(counts)})")
    print(f"rank of MACE's symmetrised couplings per output L and degree: {mace_counts[1]}; "
          f"so3net's multiplicities: {ours_by_L} ({'equal' if mace_counts[1] == ours_by_L else 'DIFFERENT'})")
    mace = report("MACE SymmetricContraction (float32)", mace_pair, repeats)
    print(f"ratio MACE/so3net: fwd {mace[1] / ours[1]:.2f}x, fwd+bwd {mace[3] / ours[3]:.2f}x (cpu time)")


def contraction_gpu(batch, repeats) -> None:
    if not torch.cuda.is_available():
        print("\n# GPU: no CUDA device here; the cuEquivariance comparison runs on a GPU machine")
        return
    channels, elements = 128, 3
    print(f"\n# weighted symmetric contraction, GPU {torch.cuda.get_device_name()}, batch {batch}")
    sync = torch.cuda.synchronize
    ours = report("so3net (complex64)", ours_case(batch, channels, elements, "cuda")[0], repeats, sync)
    try:
        pair = cueq_case(batch, channels, elements)
    except ImportError as err:
        print(f"cuEquivariance not measured ({err})")
        return
    cueq = report("cuEquivariance (float32)", pair, repeats, sync)
    print(f"ratio cuEquivariance/so3net: fwd {cueq[0] / ours[0]:.2f}x, fwd+bwd {cueq[2] / ours[2]:.2f}x (wall)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-flops", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_flops:
        flops_table()
    contraction_cpu(args.batch, args.repeats)
    contraction_gpu(args.batch * 20, args.repeats)


if __name__ == "__main__":
    main()
