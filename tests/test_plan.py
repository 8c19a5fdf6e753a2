"""Compiled product plans: caching and hashing, the path semantics against a brute-force
evaluation, kernel tables (terms, grouped entries, segments), weights, cost model, backward
plans (adjointness, conj flags), listing, errors."""
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from so3net.cg import cg_block
from so3net.kernels.torch_cg import cg_product_reference
from so3net.plan import CGPlan, Path, cg_plan, connection_of, packed_offsets

FAST = settings(max_examples=15, deadline=None)
counts = st.sampled_from([0, 1, 2, 3, 5])
taus = st.lists(counts, min_size=1, max_size=4).map(tuple).filter(any)


def plans(kinds=("full", "diag", "square")):
    """Generated plans: types with l <= 3, odd and prime counts, every kind, both bases."""
    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(kinds))
        if kind == "diag":   # one fragment count for every present part
            n = draw(st.sampled_from([1, 2, 3, 5]))
            tau1 = tuple(n * b for b in draw(st.lists(st.booleans(), min_size=1, max_size=4).filter(any)))
        else:
            tau1 = draw(taus)
        tau2 = tau1 if kind in ("square", "diag") else draw(taus)
        maxl = draw(st.none() | st.integers(0, 4))
        return cg_plan(tau1, tau2, maxl, kind, draw(st.sampled_from(["complex", "real"])))
    return build()


def brute_force(plan, x, y):
    """z from the module docstring's formula, one entry at a time (numpy, complex128)."""
    z = np.zeros((x.shape[0], plan.dim_out), dtype=complex)
    for p in plan.paths:
        C = plan.coefficients(p)
        for k, (i, j, o) in enumerate(zip(p.left, p.right, p.out)):
            for m1, m2, m in zip(*np.nonzero(C)):
                z[:, plan.offsets_out[p.l] + m * plan.tau_out[p.l] + o] += (
                    C[m1, m2, m] * x[:, plan.offsets1[p.l1] + m1 * plan.tau1[p.l1] + i]
                    * y[:, plan.offsets2[p.l2] + m2 * plan.tau2[p.l2] + j])
    return z


def test_cached_hashable_and_equal():
    a = cg_plan((2, 3), (1, 1, 2), 2)
    assert a is cg_plan((2, 3), (1, 1, 2), 2)
    b = CGPlan(a.kind, a.tau1, a.tau2, a.tau_out, a.maxl, a.basis, a.paths)
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert a != cg_plan((2, 3), (1, 1, 2), 2, basis="real")


def test_packed_offsets():
    assert packed_offsets((2, 0, 3)) == ((0, 2, 2), 2 + 0 + 15)
    assert packed_offsets(()) == ((), 0)


@FAST
@given(plans())
def test_paths_match_docstring_formula(plan):
    gen = np.random.default_rng(0)
    x = gen.normal(size=(2, plan.dim1)) + 1j * gen.normal(size=(2, plan.dim1))
    y = gen.normal(size=(2, plan.dim2)) + 1j * gen.normal(size=(2, plan.dim2))
    if plan.kind == "square":
        y = x
    got = cg_product_reference(torch.as_tensor(x), torch.as_tensor(y), plan).numpy()
    np.testing.assert_allclose(got, brute_force(plan, x, y), atol=1e-12)


def test_full_plan_fragment_order_and_type():
    plan = cg_plan((2, 3), (1, 2), 2)
    assert plan.tau_out == (2 * 1 + 3 * 2, 2 * 2 + 3 * 1 + 3 * 2, 3 * 2)
    p = [q for q in plan.paths if (q.l1, q.l2, q.l) == (1, 1, 1)][0]
    assert p.left == tuple(np.repeat(np.arange(3), 2)) and p.right == (0, 1) * 3
    assert p.out == tuple(range(4 + 3, 4 + 3 + 6))        # after the (0,1) and (1,0) blocks


@FAST
@given(plans())
def test_terms_are_the_nonzero_coefficients_sorted_by_m(plan):
    for p, (m1, m2, m, c) in zip(plan.paths, plan.path_terms):
        C = plan.coefficients(p)
        assert len(c) == np.count_nonzero(C) == plan.nnz(p)
        np.testing.assert_array_equal(C[m1, m2, m], c)
        assert (np.diff(m) >= 0).all()


@FAST
@given(plans())
def test_grouped_entries_are_the_entries(plan):
    for p, (out, left, right, entry) in zip(plan.paths, plan.path_groups):
        assert (np.diff(out) > 0).all() and left.shape == right.shape == entry.shape == (len(out), left.shape[1])
        valid = entry >= 0
        assert ((left >= 0) == valid).all() and ((right >= 0) == valid).all()
        got = sorted(zip(np.broadcast_to(out[:, None], left.shape)[valid], left[valid], right[valid], entry[valid]))
        assert got == sorted(zip(p.out, p.left, p.right, range(p.size)))


@FAST
@given(plans())
def test_segments_partition_the_written_outputs(plan):
    for q in plan.backward_plans + (plan,):
        seen = {}
        for s, seg in enumerate(q.segments):
            for i in seg.paths:
                assert q.paths[i].l == seg.l and set(q.paths[i].out) <= set(seg.out)
            for o in seg.out:
                assert seen.setdefault((seg.l, o), s) == s, "two segments write one output fragment"
        written = {(p.l, o) for p in q.paths for o in p.out}
        assert set(seen) == written
        assert sorted(i for seg in q.segments for i in seg.paths) == list(range(len(q.paths)))
        assert q.covers_output == (sum((2 * l + 1) for l, _ in written) == q.dim_out)


def test_uncovered_outputs_are_reported():
    px, _ = cg_plan((1, 0, 0, 1), (1,), 1).backward_plans      # part l=3 of x reaches no l <= 1
    assert not px.covers_output
    assert cg_plan((1, 1), (1, 1), 2).covers_output


@FAST
@given(plans())
def test_weight_offsets(plan):
    assert plan.num_weights == sum(p.size for p in plan.paths)
    assert list(plan.weight_offsets) == list(np.cumsum([0] + [p.size for p in plan.paths])[:-1])
    for q in plan.backward_plans:
        assert q.weight_offsets == plan.weight_offsets and q.num_weights == plan.num_weights


@FAST
@given(plans(), st.integers(0, 5))
def test_cost_model(plan, batch):
    terms = sum(np.count_nonzero(plan.coefficients(p)) * p.size for p in plan.paths)
    per = 10 if plan.basis == "complex" else 3
    assert plan.flops(batch) == batch * per * terms
    extra = sum((2 * p.l + 1) * p.size for p in plan.paths) * (2 if plan.basis == "complex" else 1)
    assert plan.flops(batch, weighted=True) - plan.flops(batch) == batch * extra
    x, y = torch.zeros(batch, plan.dim1, dtype=torch.complex64), torch.zeros(batch, plan.dim2, dtype=torch.complex64)
    z = torch.zeros(batch, plan.dim_out, dtype=torch.complex64)
    assert plan.bytes(batch) == sum(t.numel() * t.element_size() for t in (x, y, z))
    w = plan.num_weights * batch * (4 if plan.basis == "complex" else 8)
    assert plan.bytes(batch, itemsize=8, weighted=True) - plan.bytes(batch, itemsize=8) == w
    gz, gx, gy = z, x, y                       # backward: read gz, x, y; write gx, gy (+ w, gw)
    back = sum(t.numel() * t.element_size() for t in (gz, x, y, gx, gy))
    assert plan.bytes(batch, backward=True) - plan.bytes(batch) == back
    with_w, without = plan.bytes(batch, 8, weighted=True, backward=True), plan.bytes(batch, 8, backward=True)
    assert with_w - without == 3 * w


def test_message_bytes():
    plan = cg_plan((3, 3), (1, 1), 1, "diag")
    E, N = 11, 4
    expect = E * (8 * plan.dim1 + 8) + N * 8 * (plan.dim2 + plan.dim_out)
    assert plan.message_bytes(E, N) == expect
    assert plan.message_bytes(E, N, weighted=True) == expect + E * 4 * plan.num_weights
    back = E * (8 * plan.dim1 + 8 + 8 * plan.dim1) + N * 8 * (plan.dim_out + plan.dim2 + plan.dim2)
    assert plan.message_bytes(E, N, backward=True) == expect + back


def _inner(a, b):
    return complex((a.conj() * b).sum())


@FAST
@given(plans(("full", "diag")), st.booleans())
def test_backward_plans_are_adjoints(plan, reads_conj):
    """With c(y) = conj y when the plan reads conj y: <g, P(x, c y)> = <Px(g, y), x> = <Py(g, x), c y>
    (each backward plan conjugating its right operand as its ``conj_right`` says)."""
    if reads_conj:
        plan = plan.backward_plans[0]
    gen = torch.Generator().manual_seed(1)
    x, y, g = (torch.randn(3, n, dtype=torch.complex128, generator=gen) for n in (plan.dim1, plan.dim2, plan.dim_out))
    px, py = plan.backward_plans
    assert px.conj_right == (not plan.conj_right) and py.conj_right
    lhs = _inner(g, cg_product_reference(x, y, plan))
    assert abs(lhs - _inner(cg_product_reference(g, y, px), x)) < 1e-9
    cy = y.conj() if plan.conj_right else y
    assert abs(lhs - _inner(cg_product_reference(g, x, py), cy)) < 1e-9


def test_listing_names_every_path():
    plan = cg_plan((2, 1), (1, 1), 2)
    text = plan.listing()
    assert str(plan) == text
    assert f"{plan.flops()} flops/sample" in text and f"{plan.bytes()} bytes/sample" in text
    lines = text.splitlines()[1:]
    assert len(lines) == len(plan.paths)
    for p, line in zip(plan.paths, lines):
        assert f"({p.l1},{p.l2})->{p.l}:" in line and f"{plan.nnz(p)} CG terms" in line
    assert "d/dx" in plan.backward_plans[0].listing()


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="kron"), "kind must be one of"),
    (dict(basis="spherical"), "basis must be one of"),
    (dict(maxl=-1), "maxl must be >= 0"),
])
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cg_plan((1, 1), (1, 1), **kwargs)


def test_diag_and_square_need_matching_types():
    with pytest.raises(ValueError, match="diag product needs equal fragment counts"):
        cg_plan((2, 3), (2, 2), kind="diag")
    with pytest.raises(ValueError, match="square product needs tau2 == tau1"):
        cg_plan((2, 3), (2, 2), kind="square")
    assert cg_plan((3, 3), (1, 1), kind="diag").paths[0].right == (0, 0, 0)   # one fragment broadcasts


def test_complex_coefficients_are_rejected_by_the_tables():
    p = cg_plan((1, 1), (1, 1), 1)
    bad = CGPlan(p.kind, p.tau1, p.tau2, p.tau_out, p.maxl, p.basis, (Path(1, 1, 1, (0,), (0,), (0,)),))
    np.testing.assert_array_equal(bad.coefficients(bad.paths[0]), cg_block(1, 1, 1))
    assert len(bad.path_terms[0][3]) == np.count_nonzero(cg_block(1, 1, 1))


# ------------------------------------------------------------------ connection modes
@pytest.mark.parametrize("kind", ["full", "diag", "square"])
def test_paths_state_their_connection_and_backward_plans_keep_it(kind):
    """cg_plan states each path's connection (full; channel-wise; full or upper / strict upper
    triangle for the square by the parity of l1 + l2 - l); the maps spell the same mode, except that
    a block with a one-fragment side is both full and channel-wise; backward plans keep the mode."""
    tau = (3, 3, 3) if kind == "diag" else (3, 1, 2)
    plan = cg_plan(tau, tau, 3, kind)
    for p in plan.paths:
        if kind == "full" or (kind == "square" and p.l1 < p.l2):
            want = "full"
        elif kind == "diag":
            want = "channelwise"
        else:
            want = "upper" if (p.l1 + p.l2 - p.l) % 2 == 0 else "strict_upper"
        assert p.connection == want
        spelled = connection_of(p.left, p.right, p.out)
        assert spelled == want or (p.size == 1 and spelled == "full")
    for grad in plan.backward_plans:
        assert [p.connection for p in grad.paths] == [p.connection for p in plan.paths]
    broadcast = cg_plan((1, 1), (3, 3), 2, "diag")         # one-fragment side: a (1, 3) full block
    assert {p.connection for p in broadcast.paths} == {"channelwise"}
    assert {connection_of(p.left, p.right, p.out) for p in broadcast.paths} == {"full"}


def test_a_path_without_a_stated_connection_gets_the_one_its_maps_spell():
    assert Path(0, 0, 0, (0, 0, 1, 1), (0, 1, 0, 1), (4, 5, 6, 7)).connection == "full"
    assert Path(0, 0, 0, (0, 1, 2), (0, 1, 2), (0, 1, 2)).connection == "channelwise"
    assert Path(0, 0, 0, (0, 0, 1), (0, 1, 1), (0, 1, 2)).connection == "upper"
    assert Path(0, 0, 0, (0, 0, 1), (1, 2, 2), (0, 1, 2)).connection == "strict_upper"
    assert Path(0, 0, 0, (0, 1), (0, 1), (0, 2)).connection == "other"                 # output not consecutive
    assert Path(0, 0, 0, (1, 0), (0, 1), (0, 1)).connection == "other"
    with pytest.raises(ValueError, match="connection must be one of"):
        Path(0, 0, 0, (0,), (0,), (0,), "diagonal")
    assert Path(0, 0, 0, (0,), (0,), (0,), "full") != Path(0, 0, 0, (0,), (0,), (0,), "channelwise")   # part of the key


def test_compiled_kernels_read_the_stated_connection():
    """The compiled kernels' tables follow Path.connection: the same full-block maps stated as
    "other" are not taken as a full block (evaluated path by path instead)."""
    from so3net.kernels.native.layout import tables
    plan = cg_plan((2, 2), (2, 2), 1, "full")
    assert tables(plan) is not None
    other = dataclasses.replace(plan, paths=tuple(dataclasses.replace(p, connection="other") for p in plan.paths))
    assert other != plan and tables(other) is None
    diag = cg_plan((2, 2), (2, 2), 1, "diag")
    assert tables(diag) is not None
    assert tables(dataclasses.replace(diag, paths=tuple(dataclasses.replace(p, connection="other")
                                                         for p in diag.paths))) is None


def test_a_plan_refuses_a_stated_connection_its_maps_do_not_spell():
    """A false statement would send the path to an executor that assumes the mode (a wrong result);
    the statement is checked in the forward orientation, so backward plans of every order pass."""
    with pytest.raises(ValueError, match="states connection 'full' but its fragment maps spell 'other'"):
        CGPlan("full", (2,), (1,), (2,), 0, "real", (Path(0, 0, 0, (1, 0), (0, 0), (0, 1), "full"),))
    with pytest.raises(ValueError, match=r"spell 'channelwise' \(left .*\); state 'channelwise' or 'other'"):
        CGPlan("full", (2,), (2,), (2,), 0, "real", (Path(0, 0, 0, (0, 1), (0, 1), (0, 1), "full"),))
    stated_other = CGPlan("full", (2,), (2,), (2,), 0, "real", (Path(0, 0, 0, (0, 1), (0, 1), (0, 1), "other"),))
    assert stated_other.paths[0].connection == "other"
    for kind, tau in (("full", (2, 1, 3)), ("diag", (2, 2, 2)), ("square", (3, 1, 2))):
        for first in cg_plan(tau, tau, 2, kind).backward_plans:
            for second in first.backward_plans:
                assert len(second.backward_plans) == 2
    both_zero = Path(0, 0, 0, (0, 0), (0, 0), (0, 1))       # fragment 0 with fragment 0, twice: not channel-wise
    assert both_zero.connection == "other"
