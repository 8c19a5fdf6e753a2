"""The CG product family on SO3part/SO3vec: equivariance, bilinearity, exact output types,
GElib's fragment order, the symmetric square, normalisation, autograd, sparsity, misuse."""
import math
import pathlib
import re
import runpy

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.overrides import TorchFunctionMode

from so3net.cg import cg_block
from so3net.types import CGproduct, CGsquare, DiagCGproduct, SO3part, SO3type, SO3vec
from so3net.wigner import random_rotation

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOL = {torch.complex64: 1e-5, torch.complex128: 1e-12}
FAST = settings(max_examples=15, deadline=None)


def close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} (scale {scale:.3g})"


def close_vec(u, v, tol):
    assert u.tau == v.tau, (u.tau, v.tau)
    for l in u.parts:
        close(u.parts[l], v.parts[l], tol)


def gelib_type(tau1, tau2, maxl):
    """GElib's CGproductType, written independently of so3net.plan (trailing zeros trimmed)."""
    top = len(tau1) + len(tau2) - 2
    maxl = top if maxl is None else min(maxl, top)
    r = [0] * (maxl + 1)
    for l1, n1 in enumerate(tau1):
        for l2, n2 in enumerate(tau2):
            for l in range(abs(l1 - l2), min(l1 + l2, maxl) + 1):
                r[l] += n1 * n2
    return SO3type(r).trimmed()


# ------------------------------------------------------------------------------- strategies
def taus(max_len=4, max_n=2):
    return st.lists(st.integers(0, max_n), min_size=1, max_size=max_len).filter(any)


def uniform_taus(max_len=4):
    """Types usable in DiagCGproduct: every nonzero count equal."""
    return st.tuples(st.integers(1, 3), st.lists(st.booleans(), min_size=1, max_size=max_len).filter(any)).map(
        lambda t: tuple(t[0] if keep else 0 for keep in t[1]))


batches = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
dtypes = st.sampled_from([torch.complex64, torch.complex128])
maxls = st.one_of(st.none(), st.integers(0, 6))


def rotation_for(batch, seed, per_sample):
    g = torch.Generator().manual_seed(seed)
    return random_rotation(*(batch if per_sample else ()), generator=g)


# ------------------------------------------------------------------------------- equivariance
@FAST
@given(taus(), taus(), batches, maxls, dtypes, st.integers(0, 2**31), st.booleans())
def test_cgproduct_is_equivariant(tau1, tau2, batch, maxl, dtype, seed, per_sample):
    torch.manual_seed(seed)
    x, y = SO3vec.randn(batch, tau1, dtype=dtype), SO3vec.randn(batch, tau2, dtype=dtype)
    R = rotation_for(batch, seed, per_sample)
    close_vec(CGproduct(x.rotate(R), y.rotate(R), maxl), CGproduct(x, y, maxl).rotate(R), TOL[dtype])


@FAST
@given(uniform_taus(), batches, maxls, dtypes, st.integers(0, 2**31))
def test_diag_cgproduct_is_equivariant(tau, batch, maxl, dtype, seed):
    torch.manual_seed(seed)
    x, y = SO3vec.randn(batch, tau, dtype=dtype), SO3vec.randn(batch, tau, dtype=dtype)
    R = rotation_for(batch, seed, True)
    close_vec(DiagCGproduct(x.rotate(R), y.rotate(R), maxl), DiagCGproduct(x, y, maxl).rotate(R), TOL[dtype])


@FAST
@given(taus(), batches, maxls, dtypes, st.integers(0, 2**31))
def test_cgsquare_is_equivariant(tau, batch, maxl, dtype, seed):
    torch.manual_seed(seed)
    x = SO3vec.randn(batch, tau, dtype=dtype)
    R = rotation_for(batch, seed, True)
    close_vec(CGsquare(x.rotate(R), maxl), CGsquare(x, maxl).rotate(R), TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_equivariance_up_to_l6(dtype):
    """Parts up to l = 6 in and out (the full range of the acceptance criterion)."""
    torch.manual_seed(7)
    x = SO3vec.randn(3, (1, 0, 0, 1, 0, 0, 1), dtype=dtype)
    y = SO3vec.randn(3, (0, 1, 0, 0, 0, 1, 1), dtype=dtype)
    R = random_rotation(3, generator=torch.Generator().manual_seed(7))
    for maxl in (6, 2):
        close_vec(CGproduct(x.rotate(R), y.rotate(R), maxl), CGproduct(x, y, maxl).rotate(R), TOL[dtype])
        close_vec(CGsquare(x.rotate(R), maxl), CGsquare(x, maxl).rotate(R), TOL[dtype])


# ------------------------------------------------------------------------------- algebra and types
@FAST
@given(taus(), taus(), batches, maxls, st.integers(0, 2**31))
def test_bilinear_and_exact_type(tau1, tau2, batch, maxl, seed):
    torch.manual_seed(seed)
    dt = torch.complex128
    x1, x2 = SO3vec.randn(batch, tau1, dtype=dt), SO3vec.randn(batch, tau1, dtype=dt)
    y1, y2 = SO3vec.randn(batch, tau2, dtype=dt), SO3vec.randn(batch, tau2, dtype=dt)
    a, b = 0.3 - 1.2j, 2.0 + 0.5j
    z = CGproduct(x1, y1, maxl)
    assert z.tau == gelib_type(tau1, tau2, maxl) == SO3type(tau1).CGproduct(tau2, maxl) and z.batch == batch
    close_vec(CGproduct(a * x1 + b * x2, y1, maxl), a * z + b * CGproduct(x2, y1, maxl), 1e-12)
    close_vec(CGproduct(x1, a * y1 + b * y2, maxl), a * z + b * CGproduct(x1, y2, maxl), 1e-12)
    close_vec(CGsquare(a * x1, maxl), a * a * CGsquare(x1, maxl), 1e-12)


def test_two_type_11_vectors_give_type_231():
    z = CGproduct(SO3vec((1, 1), fill="gaussian"), SO3vec((1, 1), fill="gaussian"))
    assert z.tau == (2, 3, 1) and str(z.tau) == "(2,3,1)"


def full_product_by_blocks(x, y, maxl, pairs):
    """Explicit construction from cg_block: for part l, blocks (l1, l2) in lexicographic order and
    inside a block the fragment pairs ``pairs(l1, l2, l, n1, n2)`` in order."""
    out = {}
    for l1, X in x.parts.items():
        for l2, Y in y.parts.items():
            for l in range(abs(l1 - l2), l1 + l2 + 1 if maxl is None else min(l1 + l2, maxl) + 1):
                C = torch.tensor(cg_block(l1, l2, l), dtype=X.dtype)
                for i, j in pairs(l1, l2, l, X.shape[-1], Y.shape[-1]):
                    out.setdefault(l, []).append(torch.einsum("abc,...a,...b->...c", C, X[..., i], Y[..., j]))
    return {l: torch.stack(v, -1) for l, v in out.items()}


def all_pairs(l1, l2, l, n1, n2):
    return [(i, j) for i in range(n1) for j in range(n2)]  # fragment i * n2 + j


def square_pairs(l1, l2, l, n1, n2):
    if l1 > l2:
        return []
    if l1 < l2:
        return all_pairs(l1, l2, l, n1, n2)
    return [(i, j) for i in range(n1) for j in range(i if (l1 + l2 - l) % 2 == 0 else i + 1, n2)]


@pytest.mark.parametrize("kind", ["full", "diag", "square"])
def test_gelib_fragment_order(kind):
    torch.manual_seed(11)
    tau1, tau2 = ((2, 2, 2), (2, 0, 2)) if kind == "diag" else ((2, 3, 1), (1, 2))
    x = SO3vec.randn(4, tau1, dtype=torch.complex128)
    y = x if kind == "square" else SO3vec.randn(4, tau1 if kind == "diag" else tau2, dtype=torch.complex128)
    pairs = {"full": all_pairs, "diag": lambda l1, l2, l, n1, n2: [(i, i) for i in range(n1)],
             "square": square_pairs}[kind]
    z = {"full": CGproduct, "diag": DiagCGproduct}.get(kind, lambda a, b, m: CGsquare(a, m))(x, y, 3)
    expected = full_product_by_blocks(x, y, 3, pairs)
    assert set(expected) == {l for l, n in enumerate(z.tau) if n}
    for l, t in expected.items():
        close(z.parts[l], t, 1e-12)


@FAST
@given(taus(max_n=3), maxls, st.integers(0, 2**31))
def test_square_is_the_unordered_slice_of_the_full_product(tau, maxl, seed):
    torch.manual_seed(seed)
    x = SO3vec.randn(2, tau, dtype=torch.complex128)
    full, sq = CGproduct(x, x, maxl), CGsquare(x, maxl)
    top = 2 * (len(tau) - 1) if maxl is None else maxl
    pos, picks, count = {}, {}, {}
    for l1, n1 in enumerate(tau):  # fragment (l1, l2, i, j) of the full product: block offset + i*n2 + j
        for l2, n2 in enumerate(tau):
            for l in range(abs(l1 - l2), min(l1 + l2, top) + 1):
                base = count.get(l, 0)
                for i, j in all_pairs(l1, l2, l, n1, n2):
                    pos[l, l1, l2, i, j] = base + i * n2 + j
                for i, j in square_pairs(l1, l2, l, n1, n2):
                    picks.setdefault(l, []).append(base + i * n2 + j)
                count[l] = base + n1 * n2
    for l, n in enumerate(sq.tau):
        close(sq.parts[l], full.parts[l][..., picks.get(l, [])], 1e-12)
    for (l, l1, l2, i, j), k in pos.items():  # the rest is the swapped pair, up to (-1)^(l1+l2-l)
        sign = (-1) ** (l1 + l2 - l)
        close(full.parts[l][..., k], sign * full.parts[l][..., pos[l, l2, l1, j, i]], 1e-12)


def test_normalized_flag_gives_unit_mean_square_norm():
    """Feed every pair of basis vectors (unit norm): normalized outputs average |z|^2 = 1 per l."""
    for l1, l2 in [(0, 2), (1, 1), (2, 3)]:
        x = SO3part.identity(None, l1, dtype=torch.complex128)  # fragments e_{m1}
        y = SO3part.identity(None, l2, dtype=torch.complex128)
        plain, normed = CGproduct(x, y), CGproduct(x, y, normalized=True)
        for l in range(abs(l1 - l2), l1 + l2 + 1):
            mean_sq = (normed.parts[l].abs() ** 2).sum(0).mean()
            assert abs(float(mean_sq) - 1.0) < 1e-12
            factor = math.sqrt((2 * l1 + 1) * (2 * l2 + 1) / (2 * l + 1))
            close(normed.parts[l], factor * plain.parts[l], 1e-12)


# ------------------------------------------------------------------------------- parts, autograd, broadcasting
def test_part_products_and_output_degree():
    torch.manual_seed(5)
    p, q = SO3part.randn(3, 2, 2, dtype=torch.complex128), SO3part.randn(3, 1, 3, dtype=torch.complex128)
    z = CGproduct(p, q)
    assert z.tau == (0, 6, 6, 6)
    close(p.CGproduct(q, l=2).data, z.parts[2], 1e-12)
    assert DiagCGproduct(p, SO3part.randn(3, 2, 2, dtype=torch.complex128), l=4).n == 2
    assert CGsquare(p, l=1).n == 1  # antisymmetric pairs i < j only
    with pytest.raises(ValueError, match=r"expected 1 <= l <= 3"):
        CGproduct(p, q, l=4)


def test_autograd_matches_finite_differences():
    torch.manual_seed(6)
    x = SO3vec.randn(1, (1, 2), dtype=torch.complex128).requires_grad_()
    y = SO3vec.randn(1, (2, 1), dtype=torch.complex128).requires_grad_()
    inputs = tuple(x.parts.values()) + tuple(y.parts.values())

    def f(*ps):
        a, b = SO3vec(dict(enumerate(ps[:2]))), SO3vec(dict(enumerate(ps[2:])))
        return CGproduct(a, b, 2, normalized=True).packed(), CGsquare(a).packed()
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


def test_batch_shapes_broadcast():
    torch.manual_seed(8)
    x, y = SO3vec.randn((2, 1), (1, 1), dtype=torch.complex128), SO3vec.randn(3, (1, 1), dtype=torch.complex128)
    z = CGproduct(x, y)
    assert z.batch == (2, 3)
    close(z.parts[1][1, 2], CGproduct(SO3vec({l: p[1, 0] for l, p in x.parts.items()}),
                                      SO3vec({l: p[2] for l, p in y.parts.items()})).parts[1], 1e-12)
    assert CGproduct(SO3vec.randn(0, (1, 1)), SO3vec.randn(0, (1, 1))).batch == (0,)


# ------------------------------------------------------------------------------- sparsity (no Kronecker)
class _Sizes(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_dense_kronecker_product_is_formed():
    """A dense x ⊗ y has B (2l1+1)(2l2+1) n1 n2 entries; no tensor of that size may appear
    (the output up to maxl = 2 is 9/25 of it)."""
    x, y = SO3vec.randn(16, (0, 0, 8)), SO3vec.randn(16, (0, 0, 8))
    with _Sizes() as sizes:
        z = CGproduct(x, y, maxl=2)
    kron = 16 * 25 * 64
    assert z.packed().numel() == 16 * 9 * 64 and 0 < sizes.largest < kron, sizes.largest


def test_selection_rule_m_equals_m1_plus_m2():
    """One-hot inputs e_{m1} and e_{m2} give outputs supported on m = m1 + m2 only."""
    for m1 in range(-2, 3):
        for m2 in range(-1, 2):
            x = SO3part(torch.zeros(5, 1, dtype=torch.complex128).index_fill_(0, torch.tensor([m1 + 2]), 1))
            y = SO3part(torch.zeros(3, 1, dtype=torch.complex128).index_fill_(0, torch.tensor([m2 + 1]), 1))
            for l, part in CGproduct(x, y).parts.items():
                support = torch.nonzero(part.abs().sum(-1) > 0).flatten().tolist()
                assert set(support) <= {m1 + m2 + l}, (l, m1, m2, support)
                if abs(m1 + m2) <= l and l >= 1:
                    assert abs(float(part[m1 + m2 + l, 0]) - cg_block(2, 1, l)[m1 + 2, m2 + 1, m1 + m2 + l]) < 1e-15


# ------------------------------------------------------------------------------- misuse
def test_product_misuse_messages():
    x = SO3vec.randn(2, (1, 1))
    with pytest.raises(ValueError, match=r"equal types; got \(1,1\) and \(1,2\)"):
        DiagCGproduct(x, SO3vec.randn(2, (1, 2)))
    with pytest.raises(ValueError, match="equal fragment counts per block"):
        DiagCGproduct(SO3vec.randn(2, (2, 3)), SO3vec.randn(2, (2, 3)))
    with pytest.raises(TypeError, match="dtypes"):
        CGproduct(x, SO3vec.randn(2, (1, 1), dtype=torch.complex128))
    with pytest.raises(ValueError, match="bases"):
        CGproduct(SO3vec.randn(2, (1, 1), basis="real", dtype=torch.complex64), x)
    with pytest.raises(ValueError, match="do not broadcast"):
        CGproduct(x, SO3vec.randn(3, (1, 1)))
    with pytest.raises(ValueError, match="different devices"):
        CGproduct(x, SO3vec.zeros(2, (1, 1), device="meta"))
    with pytest.raises(ValueError, match="maxl"):
        CGproduct(x, x, maxl=-2)
    with pytest.raises(ValueError, match="reaches at most l=2"):
        CGproduct(x, x, l=3)
    with pytest.raises(TypeError, match="SO3vec or SO3part"):
        CGproduct(x, torch.zeros(2, 4))


# ------------------------------------------------------------------------------- the talk's examples
def test_talk_examples_run_and_print_in_the_talks_format(capsys):
    runpy.run_path(str(ROOT / "examples" / "talk_examples.py"), run_name="__main__")
    out = capsys.readouterr().out
    entry = r"\(-?[0-9.e+-]+,-?[0-9.e+-]+\)"
    assert re.search(r"^Part l=0:\n\[ " + entry + r" \]\nPart l=1:\n\[ (" + entry + r" ){3}\]\nPart l=2:\n\[ ("
                     + entry + r" ){5}\]$", out, re.M)
    cg = out.split("cg=\n", 1)[1]
    rows = re.match(r"Part l=0:\n((?:\[.*\]\n){2})Part l=1:\n((?:\[.*\]\n){3})Part l=2:\n(\[.*\]\n)", cg)
    assert rows, cg[:400]
    assert "type of cg: (2,3,1)" in out and "my_net(a,b) has type (13,21,9)" in out and "pack[0]=" in out
