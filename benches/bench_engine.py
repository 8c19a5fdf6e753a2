"""Engine overhead: one Cormorant-sized training step through so3net's graph engine versus the same
computation through plain torch autograd with the CG kernels behind the torch bridge.

The model (written once, run by two op namespaces) follows Cormorant: molecules with all atom pairs
as edges, edge harmonics Y^0..Y^3 scaled per channel by learned radial functions, ``levels`` CG
levels ``F <- [F ⊕ (F ⊗cg F) ⊕ sum_j (edge_ij ⊗cg F_j)] · W`` with channel-wise (diagonal) CG
products as in Cormorant (the messages by the fused message-passing product) and tau = (c, c, c, c), an invariant read-out (norms and the l = 0 part)
to per-molecule energies, MSE loss, backward, Adam step.
Both paths evaluate the same kernels (``so3net.kernels.dispatch``) on the same packed tensors; the
ratio measures what the engine's tape, backward walk and op wrappers cost on top.

Run: ``python benches/bench_engine.py [--molecules 25] [--atoms 18] [--levels 4] [--channels 10]``.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import so3net.graph as G
from so3net import sph as S
from so3net import types as T
from so3net.graph.bridge import cg_product as bridge_cg, message_passing_product as bridge_mp
from so3net.plan import cg_plan
from so3net.types import SO3vec

LMAX = 3


# ------------------------------------------------------------------------------ two op namespaces
class EngineOps:
    """so3net.graph: every op recorded on the engine's tape."""
    leaf = staticmethod(lambda t, requires_grad=False: G.Variable(t, requires_grad))
    param = staticmethod(G.Parameter)
    forces = staticmethod(lambda energy, pos: -G.grad(energy, [pos], create_graph=True)[0])
    gather, scatter_sum, sph, distance = G.gather, G.scatter_sum, G.sph, G.distance
    gaussian_rbf, fragment_scale, oplus, norm2, part = G.gaussian_rbf, G.fragment_scale, G.oplus, G.norm2, G.part
    real, imag, cat, sum, index, reshape, as_complex = G.real, G.imag, G.cat, G.sum, G.index, G.reshape, G.as_complex
    DiagCGproduct, from_parts, take = G.DiagCGproduct, G.from_parts, G.take

    @staticmethod
    def mix(v, W):
        return G.mix(v, *W)

    @staticmethod
    def message_passing(edge, node, src, dst, maxl):
        return G.message_passing(edge, node, src, dst, "diag", maxl)


class TorchOps:
    """Plain torch autograd on SO3vecs; CG products through the bridge (torch.autograd.Function)."""
    leaf = staticmethod(lambda t, requires_grad=False: t.requires_grad_(requires_grad))
    param = staticmethod(lambda t: torch.nn.Parameter(t))
    forces = staticmethod(lambda energy, pos: -torch.autograd.grad(energy, [pos], create_graph=True)[0])

    @staticmethod
    def gather(v, index):
        return v._map(lambda l, p: p.index_select(0, index)) if isinstance(v, SO3vec) else v.index_select(0, index)

    @staticmethod
    def scatter_sum(v, index, n):
        f = lambda p: p.new_zeros((n,) + tuple(p.shape[1:])).index_add(0, index, p)
        return v._map(lambda l, p: f(p)) if isinstance(v, SO3vec) else f(v)

    @staticmethod
    def sph(xyz, lmax):
        return SO3vec({l: y[..., None] for l, y in S.spherical_harmonics_all(lmax, xyz).items()})

    distance = staticmethod(lambda x: (x * x).sum(-1).sqrt())
    gaussian_rbf = staticmethod(lambda r, c, w: torch.exp(-(((r[..., None] - c) / w) ** 2)))
    oplus = staticmethod(lambda *v: T.cat(v))
    norm2 = staticmethod(lambda v: torch.cat([(p.conj() * p).real.sum(-2) for p in v.parts.values()], -1))
    part = staticmethod(lambda v, l: v.parts[l])
    real, imag, sum = staticmethod(torch.real), staticmethod(torch.imag), staticmethod(torch.sum)
    cat = staticmethod(lambda xs, dim: torch.cat(xs, dim))
    mix = staticmethod(lambda v, W: v.mix(list(W)))
    index = staticmethod(lambda x, idx: x[idx])
    reshape = staticmethod(lambda x, shape: x.reshape(shape))
    as_complex = staticmethod(lambda x: x.to(torch.complex64))
    from_parts = staticmethod(lambda parts: SO3vec(list(parts)))

    @staticmethod
    def fragment_scale(v, s):
        off = [0]
        for n in v.tau:
            off.append(off[-1] + n)
        return v._map(lambda l, p: p * s[..., None, off[l]:off[l + 1]].to(p.dtype))

    @staticmethod
    def _bridge(x, y, kind, maxl):
        plan = cg_plan(tuple(x.tau), tuple(y.tau), maxl, kind, x.basis)
        xp = x.packed()
        yp = xp if y is x else y.packed()
        return SO3vec.from_packed(bridge_cg(xp, yp, plan), plan.tau_out)

    @classmethod
    def DiagCGproduct(cls, x, y, maxl=None):
        return cls._bridge(x, y, "diag", maxl)

    @staticmethod
    def message_passing(edge, node, src, dst, maxl):
        plan = cg_plan(tuple(edge.tau), tuple(node.tau), maxl, "diag", edge.basis)
        return SO3vec.from_packed(bridge_mp(edge.packed(), node.packed(), src, dst, plan), plan.tau_out)

    @staticmethod
    def take(v, sel):
        return SO3vec({l: v.parts[l][..., list(s)] for l, s in enumerate(sel)})


# ------------------------------------------------------------------------------ the model, written once
def make_params(ops, args, gen: torch.Generator) -> dict:
    c, radial = args.channels, len(CENTERS)
    tau = T.SO3type((c,) * (LMAX + 1))
    cat_tau = tau + 2 * tau.DiagCGproduct(tau, LMAX)
    randn = lambda *s, scale=1.0: ops.param(torch.randn(*s, generator=gen) * scale)
    return {"embed": randn(SPECIES, c),
            "radial": [randn(radial, (LMAX + 1) * c, scale=radial ** -0.5) for _ in range(args.levels)],
            "W": [[randn(cat_tau[l], c, scale=cat_tau[l] ** -0.5) for l in range(LMAX + 1)] for _ in range(args.levels)],
            "head": randn((args.levels + 1) * (LMAX + 3) * c, 1, scale=0.01)}


def model_loss(ops, params: dict, data: tuple, forces: bool = False):
    """Squared energy error; with ``forces``, plus the squared forces -dE/dpos (a second-order
    training step: the backward runs through the force computation)."""
    pos, species, zeros, src, dst, mol, n_mol, target = data
    n, c = _shape(species)[0], _shape(params["embed"])[1]
    rij = ops.gather(pos, dst) - ops.gather(pos, src)
    Y = ops.take(ops.sph(rij, LMAX), ((0,) * c,) * (LMAX + 1))          # edges, type (c,c,c,c)
    rbf = ops.gaussian_rbf(ops.distance(rij), CENTERS, 0.5)            # edges, (E, radial)
    F = ops.from_parts([ops.as_complex(ops.reshape(species @ params["embed"], (n, 1, c)))] + list(zeros))
    invariants = [read_out(ops, F)]
    for Wr, W in zip(params["radial"], params["W"]):
        edge = ops.fragment_scale(Y, rbf @ Wr)
        messages = ops.message_passing(edge, F, src, dst, LMAX)      # sum_j edge_ij (x)cg F_j, fused
        F = ops.mix(ops.oplus(F, ops.DiagCGproduct(F, F, LMAX), messages), W)
        F = ops.fragment_scale(F, (ops.norm2(F) + 1.0) ** -0.5)         # keeps activations bounded
        invariants.append(read_out(ops, F))
    energies = ops.scatter_sum(ops.cat(invariants, -1) @ params["head"], mol, n_mol)
    diff = energies - target
    loss = ops.sum(diff * diff)
    if forces:
        F = ops.forces(ops.sum(energies), pos)
        loss = loss + ops.sum(F * F)
    return loss


def read_out(ops, F):
    """Rotation invariants per atom: squared norms of all fragments, real and imaginary l = 0 part."""
    l0 = ops.index(ops.part(F, 0), (slice(None), 0))
    return ops.cat([ops.norm2(F), ops.real(l0), ops.imag(l0)], -1)


def _shape(t) -> tuple[int, ...]:
    return tuple((t.value if isinstance(t, G.Variable) else t).shape)


SPECIES = 5
CENTERS = torch.linspace(0.5, 4.0, 8)


def make_data(ops, args, gen: torch.Generator) -> tuple:
    """Random molecules; every ordered atom pair inside a molecule is an edge (as in Cormorant)."""
    m, a = args.molecules, args.atoms
    n = m * a
    i, j = torch.meshgrid(torch.arange(a), torch.arange(a), indexing="ij")
    keep, base = i != j, (torch.arange(m) * a)[:, None]
    src, dst = (base + i[keep][None]).reshape(-1), (base + j[keep][None]).reshape(-1)
    species = torch.nn.functional.one_hot(torch.randint(SPECIES, (n,), generator=gen), SPECIES).float()
    zeros = [torch.zeros(n, 2 * l + 1, args.channels, dtype=torch.complex64) for l in range(1, LMAX + 1)]
    return (ops.leaf(torch.randn(n, 3, generator=gen) * 1.5, args.forces), ops.leaf(species), zeros, src, dst,
            torch.arange(m).repeat_interleave(a), m, ops.leaf(torch.randn(m, 1, generator=gen)))


# ------------------------------------------------------------------------------ timing
def build(ops, args):
    params = make_params(ops, args, torch.Generator().manual_seed(0))
    data = make_data(ops, args, torch.Generator().manual_seed(1))
    flat = [params["embed"], params["head"], *params["radial"], *[w for W in params["W"] for w in W]]
    tensors = [p.tensor if isinstance(p, G.Parameter) else p for p in flat]
    opt = torch.optim.Adam(tensors, lr=1e-3)

    def step():
        opt.zero_grad()
        loss = model_loss(ops, params, data, args.forces)
        loss.backward()
        opt.step()
        return float(loss.value if isinstance(loss, G.Variable) else loss.detach())
    return step


def timed_pair(first, second, repeats: int, clock) -> tuple[list[float], list[float]]:
    """Alternate the two steps so that load from other processes hits both alike."""
    first(), second()
    a, b = [], []
    for _ in range(repeats):
        for step, times in ((first, a), (second, b)):
            start = clock()
            step()
            times.append(clock() - start)
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--molecules", type=int, default=25)
    ap.add_argument("--atoms", type=int, default=18)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--channels", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--forces", action="store_true", help="add a force term (gradients of gradients)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.process_time (steadier on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    engine, bridge = build(EngineOps, args), build(TorchOps, args)
    first_e, first_t = engine(), bridge()
    print(f"first-step losses: engine {first_e:.6g}  torch bridge {first_t:.6g}  "
          f"(relative difference {abs(first_e - first_t) / abs(first_t):.1e})")
    a, b = timed_pair(engine, bridge, args.repeats, time.perf_counter if args.clock == "wall" else time.process_time)
    t_engine, t_bridge = statistics.median(a), statistics.median(b)
    pair_ratio = statistics.median([x / y for x, y in zip(a, b)])
    edges = args.molecules * args.atoms * (args.atoms - 1)
    print(f"cormorant step  molecules={args.molecules} atoms={args.molecules * args.atoms} edges={edges} "
          f"levels={args.levels} tau=({','.join([str(args.channels)] * (LMAX + 1))}) threads={torch.get_num_threads()} "
          f"clock={args.clock} forces={args.forces}")
    print(f"  engine        {t_engine * 1e3:9.1f} ms  (median of {args.repeats}; min {min(a) * 1e3:.1f})")
    print(f"  torch bridge  {t_bridge * 1e3:9.1f} ms  (median of {args.repeats}; min {min(b) * 1e3:.1f})")
    print(f"  ratio engine / torch bridge = {t_engine / t_bridge:.3f} (medians), {min(a) / min(b):.3f} (minima), "
          f"{pair_ratio:.3f} (median of back-to-back pairs)  target <= 1.15")


if __name__ == "__main__":
    main()
