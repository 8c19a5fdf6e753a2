"""Layers of so3net.nn: equivariance layer by layer, the Cormorant aggregation through the kernels'
outer strategy against the per-edge cg_product (the oracle), neighbour slots, radial bases and
cutoffs, invariant read-outs, gradients to second order. The outer strategy itself is tested in
tests/test_message.py."""
import math

import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given, settings, strategies as st

from so3net.kernels.dispatch import cg_product
from so3net.kernels.message import channelwise_product, channelwise_square_plan, padded_message_product
from so3net.nn import (BesselBasis, CGLayer, EdgeLevel, Neighbours, PartNorm, RadPolyTrig, SO3Linear, SoftCutoff,
                       cosine_cutoff, edge_harmonics, edge_operand, edge_vectors, invariants, pair_dots, smooth_switch)
from so3net.plan import cg_plan, packed_offsets
from so3net.types import SO3vec
from so3net.wigner import random_rotation, wigner_D_from_matrix

FAST = settings(max_examples=12, deadline=None)
C128 = torch.complex128


def close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    a, b = a.detach(), b.detach()
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} (scale {scale:.3g})"


def randn_packed(B, tau, gen, dtype=C128):
    return torch.randn(B, packed_offsets(tuple(tau))[1], dtype=dtype, generator=gen)


def vec(x, tau):
    return SO3vec.from_packed(x, tau)


def square(x, plan):
    return channelwise_product(x, x, plan)


def rotate_packed(x, tau, R):
    """Apply D^l(R) to every part of a packed vector."""
    return vec(x, tau).rotate(R).packed()


def random_edges(n_atoms, n_edges, gen):
    src = torch.randint(0, n_atoms, (n_edges,), generator=gen)
    dst = torch.randint(0, n_atoms, (n_edges,), generator=gen)
    keep = src != dst
    return src[keep], dst[keep]


# ------------------------------------------------------------------ spherical harmonics
def test_edge_harmonics_are_packed_and_rotate_with_D():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(40, 3, dtype=torch.float64, generator=g) * 2
    Y = edge_harmonics(v, 3)
    assert Y.shape == (40, 16)
    u = v / v.norm(dim=1, keepdim=True)
    theta, phi = torch.arccos(u[:, 2]).numpy(), torch.atan2(u[:, 1], u[:, 0]).numpy()
    R = random_rotation(dtype=torch.float64, generator=g)
    YR = edge_harmonics(v @ R.T, 3)
    for l in range(4):
        ref = np.stack([scipy.special.sph_harm_y(l, m, theta, phi) for m in range(-l, l + 1)], 1)
        close(Y[:, l * l:(l + 1) ** 2], torch.as_tensor(ref), 1e-12)
        close(YR[:, l * l:(l + 1) ** 2], Y[:, l * l:(l + 1) ** 2] @ wigner_D_from_matrix(l, R).T, 1e-12)


# ------------------------------------------------------------------ linear mixing
@FAST
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(1, 5), st.integers(0, 2**31))
def test_linear_mixing_is_equivariant(tau, n_out, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tau = tuple(tau)
    lin = SO3Linear(tau, (n_out,) * len(tau)).double()
    x = randn_packed(3, tau, g)
    R = random_rotation(dtype=torch.float64, generator=g)
    close(lin(vec(rotate_packed(x, tau, R), tau)).packed(), rotate_packed(lin(vec(x, tau)).packed(), lin.tau_out, R),
          1e-12)


def test_linear_mixing_rejects_missing_parts():
    with pytest.raises(ValueError, match="no input"):
        SO3Linear((2, 0), (3, 3))


# ------------------------------------------------------------------ channel-wise products
@FAST
@given(st.integers(1, 3), st.integers(0, 3), st.integers(0, 4), st.integers(0, 2**31))
def test_cg_square_matches_kernel_oracle(C, L, maxl, seed):
    g = torch.Generator().manual_seed(seed)
    tau = (C,) * (L + 1)
    plan = channelwise_square_plan(tau, maxl)
    x = randn_packed(4, tau, g)
    close(square(x, plan), cg_product(x, x, plan), 1e-12)


def test_square_plan_keeps_exactly_the_symmetric_blocks():
    """Every block of the full channel-wise square that the plan drops is ± a kept block, or zero."""
    g = torch.Generator().manual_seed(1)
    tau, maxl = (2, 2, 2), 4
    full, sym = cg_plan(tau, tau, maxl, "diag"), channelwise_square_plan(tau, maxl)
    x = randn_packed(3, tau, g)
    zf, zs = vec(cg_product(x, x, full), full.tau_out).parts, vec(square(x, sym), sym.tau_out).parts

    def block(z, p):
        return z[p.l][:, :, p.out[0]:p.out[-1] + 1]

    kept = {(p.l1, p.l2, p.l): p for p in sym.paths}
    for p in full.paths:
        if (p.l1, p.l2, p.l) in kept:
            close(block(zf, p), block(zs, kept[p.l1, p.l2, p.l]), 1e-12)
        elif p.l1 > p.l2:
            sign = (-1) ** (p.l1 + p.l2 - p.l)
            close(block(zf, p), sign * block(zs, kept[p.l2, p.l1, p.l]), 1e-12)
        else:
            close(block(zf, p), torch.zeros_like(block(zf, p)), 1e-12)
    assert sum(p.size for p in sym.paths) < sum(p.size for p in full.paths)


def _edge_reference(scalars, Y, x, src, dst, plan):
    """Σ_e CG(Υ_e, x_src(e)) with Υ_e built part by part, through the kernels' cg_product."""
    E, L1, C = scalars.shape
    ups = torch.cat([(scalars[:, l, None, :] * Y[:, l * l:(l + 1) ** 2, None]).reshape(E, -1) for l in range(L1)], 1)
    out = torch.zeros(x.shape[0], plan.dim_out, dtype=x.dtype)
    return out.index_add(0, dst, cg_product(ups, x[src], plan))


def _slot_layout(values, src, dst, n_atoms):
    """Edge values (E, ...) -> neighbour slots (N, d, ...), in the order of Neighbours.from_edges."""
    nbrs = Neighbours.from_edges(src, dst, n_atoms)
    order = torch.argsort(dst, stable=True)
    deg = torch.bincount(dst, minlength=n_atoms)
    rank = torch.arange(len(dst)) - (torch.cumsum(deg, 0) - deg)[dst[order]]
    out = values.new_zeros(nbrs.src.shape + values.shape[1:])
    out[dst[order], rank] = values[order]
    return nbrs, out


@FAST
@given(st.integers(1, 3), st.integers(0, 2), st.sampled_from([0, 1, 3]), st.integers(0, 3), st.integers(0, 2**31))
def test_cormorant_aggregation_matches_kernel_oracle(C, L_sh, L_atom, maxl, seed):
    g = torch.Generator().manual_seed(seed)
    n_atoms = 5
    src, dst = random_edges(n_atoms, 12, g)
    tau_atom = (C,) * (L_atom + 1)
    plan = cg_plan((C,) * (L_sh + 1), tau_atom, maxl, "diag")
    scalars = torch.randn(len(src), L_sh + 1, C, dtype=C128, generator=g)
    Y = torch.randn(len(src), (L_sh + 1) ** 2, dtype=C128, generator=g)
    x = randn_packed(n_atoms, tau_atom, g)
    nbrs, s_slots = _slot_layout(scalars, src, dst, n_atoms)
    _, y_slots = _slot_layout(Y, src, dst, n_atoms)
    got = padded_message_product(edge_operand(s_slots, y_slots), nbrs.sources(x, C), plan)
    close(got, _edge_reference(scalars, Y, x, src, dst, plan), 1e-12)


def test_aggregation_and_square_gradients_to_second_order():
    """First and second derivatives of the aggregation and the square equal those of the kernels'
    cg_product (itself differentiable to any order) on the same inputs."""
    g = torch.Generator().manual_seed(3)
    C, tau = 2, (2, 2)
    plan, sq = cg_plan((C, C), tau, 2, "diag"), channelwise_square_plan(tau, 2)
    src, dst = torch.tensor([0, 1, 2, 2, 0]), torch.tensor([1, 0, 0, 1, 2])
    scalars = torch.randn(len(src), 2, C, dtype=C128, generator=g, requires_grad=True)
    Y = torch.randn(len(src), 4, dtype=C128, generator=g)
    x = randn_packed(3, tau, g).requires_grad_(True)
    w = randn_packed(3, plan.tau_out, g)
    ws = randn_packed(3, sq.tau_out, g)

    def ours(s, x):
        nbrs, s_slots = _slot_layout(s, src, dst, 3)
        _, y_slots = _slot_layout(Y, src, dst, 3)
        agg = padded_message_product(edge_operand(s_slots, y_slots), nbrs.sources(x, C), plan)
        return (agg * w).sum().real + (square(x, sq) * ws).sum().real

    def oracle(s, x):
        return (_edge_reference(s, Y, x, src, dst, plan) * w).sum().real + (cg_product(x, x, sq) * ws).sum().real

    results = []
    for f in (ours, oracle):
        gs, gx = torch.autograd.grad(f(scalars, x), (scalars, x), create_graph=True)
        second = torch.autograd.grad((gs.abs() ** 2).sum() + (gx.abs() ** 2).sum(), (scalars, x))
        results.append((gs, gx) + second)
    for a, b in zip(*results):
        close(a, b, 1e-11)


# ------------------------------------------------------------------ neighbours
def test_neighbour_slots_round_trip():
    g = torch.Generator().manual_seed(5)
    src, dst = random_edges(7, 20, g)
    nbrs = Neighbours.from_edges(src, dst, 7)
    assert nbrs.num_edges == len(src)
    pairs = [(int(j), i) for i in range(7) for j, ok in zip(nbrs.src[i], nbrs.mask[i]) if ok]
    assert sorted(pairs) == sorted(zip(src.tolist(), dst.tolist()))
    assert bool((nbrs.src[~nbrs.mask] == 7).all())
    _, r = edge_vectors(nbrs, torch.randn(7, 3, dtype=torch.float64, generator=g), far=9.0)
    assert bool((r[~nbrs.mask] == 9.0).all())


def test_pair_dots_and_invariants_are_invariant():
    g = torch.Generator().manual_seed(6)
    tau = (3, 3, 3)
    x = randn_packed(4, tau, g)
    src, dst = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([1, 0, 0, 2, 3])
    nbrs = Neighbours.from_edges(src, dst, 4)
    R = random_rotation(dtype=torch.float64, generator=g)
    xr = rotate_packed(x, tau, R)

    def dots(x):
        return pair_dots(vec(x, tau), nbrs.sources(x, 3))

    close(dots(xr), dots(x), 1e-12)
    d = dots(x)
    i, k = 0, 0  # slot (0, 0) holds source 1: (F_0 · F_1) for l = 1, channel 2
    ref = (x[0, 3:12].reshape(3, 3)[:, 2].conj() * x[1, 3:12].reshape(3, 3)[:, 2]).sum()
    assert int(nbrs.src[i, k]) == 1
    close(d[i, k, 3 + 2], ref, 1e-12)
    close(invariants(vec(xr, tau)), invariants(vec(x, tau)), 1e-12)
    assert invariants(vec(x, tau)).shape == (4, 2 * 3 + 9)


# ------------------------------------------------------------------ radial bases and cutoffs
def test_polytrig_basis_starts_as_powers_times_sines_and_cosines():
    basis = RadPolyTrig((2, 1)).double()
    r = torch.linspace(0.5, 3.0, 7, dtype=torch.float64)
    got = basis(r).reshape(7, 2, 6)
    trig = torch.stack([torch.ones_like(r), torch.sin(2 * math.pi * r), torch.sin(4 * math.pi * r),
                        torch.ones_like(r), torch.cos(2 * math.pi * r), torch.cos(4 * math.pi * r)], 1)
    close(got[:, 0], trig, 1e-6)  # the initial phases are float32 values of pi/2
    close(got[:, 1], trig / r[:, None], 1e-6)
    assert basis.num_basis == 12 and len(list(basis.parameters())) == 2


def test_bessel_and_cutoffs_vanish_smoothly():
    rc = 2.0
    r = torch.tensor([rc - 1e-6, rc, rc + 0.5], dtype=torch.float64, requires_grad=True)
    b = BesselBasis(5, rc).double()(r)
    assert float(b.detach().abs().max()) < 1e-9
    (grad,) = torch.autograd.grad(b.sum(), r)
    assert float(grad.abs().max()) < 1e-4
    for f in (lambda r: cosine_cutoff(r, rc), lambda r: smooth_switch(r, 1.5, rc)):
        v = f(r)
        (grad,) = torch.autograd.grad(v.sum(), r)
        assert float(v.detach().abs().max()) < 1e-9 and float(grad.abs().max()) < 1e-4
    s = torch.linspace(0, 3, 31, dtype=torch.float64)
    assert bool((smooth_switch(s, 1.5, rc)[s <= 1.5] == 1).all())
    assert bool((smooth_switch(s, rc, rc) == (s < rc).double()).all())


def test_soft_cutoff_modes():
    r = torch.tensor([1.0, 1.73, 3.0])
    soft = SoftCutoff(4, 1.73, 0.2, "learn")
    assert {n for n, _ in soft.named_parameters()} == {"radius", "width"}
    assert not list(SoftCutoff(4, 1.73, 0.2, "fixed").parameters())
    assert {n for n, _ in SoftCutoff(4, 1.73, 0.2, "learn_rad").named_parameters()} == {"radius"}
    v = soft(r).detach()
    assert v.shape == (3, 4) and abs(float(v[1, 0]) - 0.5) < 1e-6 and float(v[2, 0]) < 2e-3
    with pytest.raises(ValueError, match="soft cutoff mode"):
        SoftCutoff(4, 1.73, 0.2, "sometimes")


# ------------------------------------------------------------------ norm, edge level, CG layer
def test_part_norm_is_equivariant_and_normalises():
    g = torch.Generator().manual_seed(7)
    tau = (2, 3, 1)
    norm = PartNorm(tau).double()
    x = randn_packed(5, tau, g) * 7
    R = random_rotation(dtype=torch.float64, generator=g)
    close(norm(vec(rotate_packed(x, tau, R), tau)).packed(), rotate_packed(norm(vec(x, tau)).packed(), tau, R), 1e-12)
    for l, p in norm(vec(x, tau)).parts.items():
        close(p.abs().square().mean(dim=(1, 2)), torch.ones(5, dtype=torch.float64), 1e-5)


def test_edge_level_masks_and_depends_on_all_inputs():
    g = torch.Generator().manual_seed(8)
    torch.manual_seed(8)
    level = EdgeLevel(3, 4, 6, 3, 2, SoftCutoff(3, 1.0, 0.2, "learn")).double()
    prev = torch.randn(5, 2, 3, 3, dtype=C128, generator=g)
    dots = torch.randn(5, 2, 4, dtype=C128, generator=g)
    basis = torch.randn(5, 2, 6, dtype=torch.float64, generator=g)
    r = torch.rand(5, 2, dtype=torch.float64, generator=g) + 0.5
    hard = torch.ones(5, 2, dtype=torch.float64)
    hard[0, 1] = 0
    out = level(prev, dots, basis, r, hard).detach()
    assert out.shape == (5, 2, 3, 3)
    assert float(out[0, 1].abs().max()) == 0
    for i, t in enumerate((prev, dots, basis)):
        args = [prev, dots, basis]
        args[i] = torch.zeros_like(t)
        assert float((level(*args, r, hard).detach() - out).abs().max()) > 1e-6


def test_cg_layer_is_equivariant():
    g = torch.Generator().manual_seed(9)
    torch.manual_seed(9)
    C, n_atoms = 3, 5
    src, dst = random_edges(n_atoms, 14, g)
    nbrs = Neighbours.from_edges(src, dst, n_atoms)
    pos = torch.randn(n_atoms, 3, dtype=torch.float64, generator=g)
    scalars = torch.randn(*nbrs.src.shape, 3, C, dtype=C128, generator=g)
    for tau_in in ((C,), (C, C, C)):
        layer = CGLayer(tau_in, (C, C, C), 2, C).double()
        x = randn_packed(n_atoms, tau_in, g)
        R = random_rotation(dtype=torch.float64, generator=g)

        def run(pos, x, tau_in=tau_in, layer=layer):
            v, _ = edge_vectors(nbrs, pos, far=10.0)
            out = layer(vec(x, tau_in), edge_operand(scalars, edge_harmonics(v, 2)), nbrs)
            return out.packed()

        close(run(pos @ R.T, rotate_packed(x, tau_in, R)), rotate_packed(run(pos, x), layer.tau_out, R), 1e-11)


@pytest.mark.parametrize("name", ["native", "torch", "triton"])
def test_cg_layer_sums_the_messages_of_several_lists(name, monkeypatch):
    """CGLayer with several neighbour lists (buckets, or lists that share atoms) gives every atom
    the sum of all its messages, as one list of all the edges does, on every backend."""
    from so3net.kernels import backend
    g = torch.Generator().manual_seed(3)
    C, n_atoms = 2, 5
    src, dst = random_edges(n_atoms, 12, g)
    whole = Neighbours.from_edges(src, dst, n_atoms)
    halves = [Neighbours.from_edges(src[part], dst[part], n_atoms) for part in (slice(0, 6), slice(6, None))]
    pos = torch.randn(n_atoms, 3, dtype=torch.float64, generator=g)
    x = vec(randn_packed(n_atoms, (C, C), g), (C, C))
    layer = CGLayer((C, C), (C, C), 1, C).double()
    scalars = torch.randn(len(src), 2, C, dtype=C128, generator=g)   # per edge; placed in slots below

    def operand(nbrs):
        slot_scalars = torch.zeros(*nbrs.src.shape, 2, C, dtype=C128)
        for i in range(nbrs.src.shape[0]):
            for k in range(nbrs.src.shape[1]):
                if nbrs.mask[i, k]:   # the scalars of edge (src -> node), found by its endpoints
                    e = int(((src == nbrs.src[i, k]) & (dst == nbrs.rows()[i])).nonzero()[0, 0])
                    slot_scalars[i, k] = scalars[e]
        v, _ = edge_vectors(nbrs, pos, far=10.0)
        return edge_operand(slot_scalars, edge_harmonics(v, 1))

    def operand_at(nbrs, order):   # a list over renumbered atoms: its edges in the original numbering
        back = Neighbours(torch.where(nbrs.mask, order[nbrs.src.clamp(max=n_atoms - 1)], n_atoms), nbrs.mask,
                          order[nbrs.rows()])
        return operand(back)
    with backend(name):
        one = layer(x, operand(whole), whole).packed()
        several = layer(x, [operand(h) for h in halves], halves).packed()
        bucketed = whole.buckets(3)
        by_buckets = layer(x, [operand(b) for b in bucketed], bucketed).packed()
        buckets = Neighbours.buckets            # split even these few slots
        monkeypatch.setattr(Neighbours, "buckets", lambda self, k: buckets(self, k, min_saving=0.0, min_slots=1))
        order, grouped = whole.grouped(3)      # atoms renumbered: every list's rows are consecutive atoms
        assert order is not None and Neighbours.consecutive(grouped)
        x_ordered = vec(x.packed().index_select(0, order), (C, C))
        by_order = layer(x_ordered, [operand_at(b, order) for b in grouped], grouped).packed()
    close(several, one, 1e-12)
    close(by_buckets, one, 1e-12)
    close(by_order, one.index_select(0, order), 1e-12)
