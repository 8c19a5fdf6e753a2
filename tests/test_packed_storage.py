"""SO3vec stores one packed tensor; its parts are views made by one split (issue 14).

Per-part code must give the same gradients as packed code, and its backward must not fill a
full-size zero tensor per part (what slicing each part out of the packed output did)."""
import pytest
import torch

from so3net.fourier import sphere_forward, sphere_grid, sphere_inverse
from so3net.types import CGproduct, DiagCGproduct, SO3part, SO3vec

TAU = (2, 0, 3)                       # an empty part in the middle


def operands(batch, basis, seed=0):
    torch.manual_seed(seed)
    dtype = torch.complex128 if basis == "complex" else torch.float64
    x = SO3vec.randn(batch, TAU, dtype=dtype, basis=basis).requires_grad_()
    y = SO3vec.randn(batch, (1, 2, 1), dtype=dtype, basis=basis).requires_grad_()
    return x, y


def leaves(*vecs):
    return [p for v in vecs for p in v.parts.values()]


def per_part_loss(z: SO3vec, weights: SO3vec):
    """What users write: a loss summed part by part (real and imaginary parts for complex data)."""
    total = 0
    for l, p in z.parts.items():
        q = weights.parts[l] * p
        total = total + (q.real.sum() + q.imag.sum() if q.is_complex() else q.sum()) + p.abs().pow(2).sum()
    return total


def packed_loss(z: SO3vec, weights: SO3vec):
    q = weights.packed() * z.packed()
    return (q.real.sum() + q.imag.sum() if q.is_complex() else q.sum()) + z.packed().abs().pow(2).sum()


@pytest.mark.parametrize("basis", ["complex", "real"])
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_per_part_gradients_equal_packed_gradients(basis, batch):
    x, y = operands(batch, basis)
    z = CGproduct(x, y, maxl=3)
    weights = SO3vec.randn(batch, z.tau, dtype=z.dtype, basis=basis)
    g_parts = torch.autograd.grad(per_part_loss(z, weights), leaves(x, y), allow_unused=True)
    z = CGproduct(x, y, maxl=3)
    g_packed = torch.autograd.grad(packed_loss(z, weights), leaves(x, y), allow_unused=True)
    assert len(g_parts) == len(g_packed) == 6
    for a, b in zip(g_parts, g_packed):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    if batch:                            # gradients are not all zero (the check could not pass vacuously)
        assert sum(float(g.abs().sum()) for g in g_parts if g is not None) > 0


def graph_nodes(root):
    """Every autograd node reachable from ``root`` (iteratively)."""
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return seen


@pytest.mark.parametrize("basis", ["complex", "real"])
def test_per_part_loss_graph_has_one_split_and_no_slices(basis):
    x, y = operands(4, basis)
    z = CGproduct(x, y, maxl=3)
    loss = per_part_loss(z, SO3vec.ones(4, z.tau, dtype=z.dtype, basis=basis))
    names = [type(n).__name__ for n in graph_nodes(loss.grad_fn)]
    assert not [n for n in names if n.startswith(("SliceBackward", "IndexBackward", "AsStridedBackward"))], names
    assert sum("Split" in n for n in names) == 1                # the output's parts: one split node


@pytest.mark.parametrize("basis", ["complex", "real"])
def test_per_part_backward_fills_no_full_size_tensor_per_part(basis):
    x, y = operands(64, basis)
    z = CGproduct(x, y, maxl=3)
    full = tuple(z.packed().shape)
    loss = per_part_loss(z, SO3vec.ones(64, z.tau, dtype=z.dtype, basis=basis))
    with torch.profiler.profile(record_shapes=True) as prof:
        loss.backward()
    full_fills = [e for e in prof.events() if e.name in ("aten::fill_", "aten::zero_", "aten::zeros")
                  and e.input_shapes and tuple(e.input_shapes[0]) == full]
    assert len(full_fills) <= 1, [(e.name, e.input_shapes) for e in full_fills]
    assert all(p.grad is not None for p in leaves(x, y) if p.numel())


def test_product_output_is_stored_in_the_kernel_output():
    x, _ = operands(3, "complex")
    z = CGproduct(x, x)
    assert z.packed() is z.packed()
    t = z.packed()
    assert all(p.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() for p in z.parts.values())
    assert all(p._base is (t if t._base is None else t._base) for p in z.parts.values())


def test_parts_are_views_and_assignment_packs_anew():
    t = torch.randn(3, SO3vec.zeros(1, TAU).tau.dim, dtype=torch.complex128)
    v = SO3vec.from_packed(t.clone(), TAU)
    v.parts[2].mul_(-1)                                           # in place: the packed tensor sees it
    torch.testing.assert_close(v.packed()[:, 2:], -t[:, 2:])
    v.parts[0] = v.parts[0] * 2                                   # a new tensor: packed anew
    torch.testing.assert_close(v.packed()[:, :2], 2 * t[:, :2])
    torch.testing.assert_close(v.parts[2], -t[:, 2:].reshape(3, 5, 3))
    with pytest.raises(TypeError, match="cannot be removed"):
        del v.parts[1]
    with pytest.raises(ValueError, match=r"part l=2 expects shape \(b..., 5, n\)"):
        v.parts[2] = torch.zeros(3, 4, 1, dtype=torch.complex128)


def test_from_packed_keeps_non_contiguous_and_conjugate_tensors_without_copy():
    t = torch.randn(TAU[0] + 5 * TAU[2], 3, dtype=torch.complex128).t()      # (3, dim), not contiguous
    v = SO3vec.from_packed(t, TAU)
    assert v.packed() is t
    torch.testing.assert_close(v.parts[2], t[:, 2:].reshape(3, 5, 3))
    c = SO3vec.from_packed(t.conj(), TAU)
    torch.testing.assert_close(CGproduct(c, c).packed(), CGproduct(v.conj(), v.conj()).packed())


def test_leaf_parts_take_gradients_and_optimiser_steps():
    torch.manual_seed(1)
    v = SO3vec.randn(2, (1, 2), dtype=torch.complex128).requires_grad_()
    assert all(p.is_leaf and p.requires_grad for p in v.parts.values())
    loss = CGproduct(v, v).packed().abs().pow(2).sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in v.parts.values())
    torch.testing.assert_close(v.grad.parts[1], v.parts[1].grad)
    before = CGproduct(v, v).packed().detach().clone()
    opt = torch.optim.SGD(list(v.parts.values()), lr=0.1)
    opt.step()                                                    # in place on the parts
    after = CGproduct(v, v).packed().detach()
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, CGproduct(v.detach(), v.detach()).packed())


def test_requires_grad_on_a_packed_leaf_and_on_results():
    t = torch.randn(2, 8, dtype=torch.complex128)
    v = SO3vec.from_packed(t, (2, 2)).requires_grad_()
    CGproduct(v, v).packed().abs().sum().backward()
    assert all(p.grad is not None for p in v.parts.values())
    w = SO3vec.from_packed(torch.randn(2, 8, dtype=torch.complex128, requires_grad=True), (2, 2))
    z = DiagCGproduct(w, w)
    assert z.requires_grad and z.requires_grad_() is z
    with pytest.raises(RuntimeError, match="use v.detach"):
        z.requires_grad_(False)
    assert not z.detach().requires_grad and z.detach().packed().grad_fn is None


def test_to_follows_torch_conventions():
    v = SO3vec.randn(2, (1, 1))
    assert v.to(torch.complex128).dtype == torch.complex128
    assert v.to("cpu") is v and v.to(torch.device("cpu"), torch.complex64) is v
    assert v.to(torch.zeros(1, dtype=torch.complex128)).dtype == torch.complex128
    assert v.to(dtype=torch.complex128, copy=True).dtype == torch.complex128
    assert v.to(SO3vec.randn(1, (1,), dtype=torch.complex128)).dtype == torch.complex128
    r = SO3vec.randn(2, (1, 1), basis="real")
    assert r.to(torch.float64).dtype == torch.float64 and r.to(torch.complex128).dtype == torch.complex128
    with pytest.raises(TypeError, match="the complex basis stores complex64, complex128; got torch.float64"):
        v.to(torch.float64)
    p = SO3part.randn(2, 1, 3)
    assert p.to(torch.complex128).dtype == torch.complex128 and p.to("cpu", torch.complex128).dtype == torch.complex128
    with pytest.raises(TypeError, match="complex basis stores"):
        p.to(torch.float32)


def test_arithmetic_reads_and_writes_packed_tensors():
    x, y = SO3vec.randn(3, TAU, dtype=torch.complex128), SO3vec.randn(3, TAU, dtype=torch.complex128)
    for got, want in (((x + y), x.packed() + y.packed()), ((x - y), x.packed() - y.packed()),
                      (-x, -x.packed()), (x * 2.5, 2.5 * x.packed()), (x / 2, x.packed() / 2),
                      (x * torch.arange(3.0, dtype=torch.float64), torch.arange(3.0)[:, None] * x.packed()),
                      (x.conj(), x.packed().conj())):
        torch.testing.assert_close(got.packed(), want.to(got.dtype))
        assert got.tau == x.tau


@pytest.mark.parametrize("bandwidth", [4, 20])         # a DFT and an FFT over phi
def test_fourier_accepts_conjugate_views(bandwidth):
    grid, L = sphere_grid(bandwidth, "equiangular"), bandwidth - 1
    values = torch.randn(2, grid.size, dtype=torch.complex128)
    torch.testing.assert_close(sphere_forward(values.conj(), grid, L).packed(),
                               sphere_forward(values.conj().resolve_conj(), grid, L).packed())
    coeffs = torch.randn(2, (L + 1) ** 2, dtype=torch.complex128)
    for real in (True, False):
        got = sphere_inverse(SO3vec.from_packed(coeffs.conj(), (1,) * (L + 1)), grid, real=real)
        want = sphere_inverse(SO3vec.from_packed(coeffs.conj().resolve_conj(), (1,) * (L + 1)), grid, real=real)
        torch.testing.assert_close(got, want)


def test_fourier_output_is_packed_and_input_is_read_in_place():
    grid = sphere_grid(6, "equiangular")
    coeffs = sphere_forward(torch.randn(2, grid.size, dtype=torch.complex128), grid, 5)
    assert coeffs.packed().shape == (2, 36) and coeffs.parts[3].shape == (2, 7, 1)
    t = coeffs.packed()
    assert all(p._base is (t if t._base is None else t._base) for p in coeffs.parts.values())


def test_split_node_gradients_of_second_order():
    """Second-order gradients flow through the split's backward (a force-loss pattern)."""
    torch.manual_seed(3)
    x = torch.randn(2, 8, dtype=torch.complex128, requires_grad=True)

    def f(t):
        z = CGproduct(SO3vec.from_packed(t, (2, 2)), SO3vec.from_packed(t, (2, 2)), maxl=1)
        return torch.stack([(p.abs() ** 2).sum() for p in z.parts.values()]).sum().reshape(1)
    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=True)


def test_unused_parts_get_zero_gradients():
    x, y = operands(3, "real")
    z = CGproduct(x, y, maxl=3)
    g = torch.autograd.grad(z.parts[1].sum(), z.packed())[0]          # only part 1 used
    offsets = [0]
    for l, n in enumerate(z.tau):
        offsets.append(offsets[-1] + (2 * l + 1) * n)
    assert torch.equal(g[:, offsets[1]:offsets[2]], torch.ones_like(g[:, offsets[1]:offsets[2]]))
    assert not g[:, :offsets[1]].any() and not g[:, offsets[2]:].any()


# ------------------------------------------------------------------ review findings, each pinned
def test_parts_first_used_without_grad_still_carry_gradients():
    for context in (torch.no_grad, torch.inference_mode):
        x, y = operands(2, "complex")
        z = CGproduct(x, y)
        with context():
            str(z), z.norm()                                   # the first use of the parts
        sum(p.abs().pow(2).sum() for p in z.parts.values()).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in x.parts.values() if p.numel())


def test_views_made_before_the_packed_leaf_requires_grad_are_remade():
    v = SO3vec.from_packed(torch.randn(2, 8, dtype=torch.complex128), (2, 2))
    v.parts                                                    # views of a tensor without grad
    v.packed().requires_grad_()
    sum(p.abs().sum() for p in v.parts.values()).backward()
    assert v.packed().grad is not None and v.grad is not None


def test_copy_deepcopy_and_pickle_keep_parts_and_packed_together():
    import copy
    import pickle
    v = SO3vec.randn(2, (1, 2), dtype=torch.complex128)
    v.parts
    w = copy.copy(v)
    w.parts[1] = torch.zeros(2, 3, 2, dtype=v.dtype)            # repacks w, not v
    assert w.packed()[:, 1:].abs().sum() == 0 and v.packed()[:, 1:].abs().sum() > 0
    for clone in (copy.deepcopy(v), pickle.loads(pickle.dumps(v))):
        assert isinstance(clone.parts, type(v.parts)) and torch.equal(clone.packed(), v.packed())
        clone.parts[0].zero_()
        assert not clone.packed()[:, 0].any() and v.packed()[:, 0].all()
    leaf = SO3vec.randn(2, (1, 2), dtype=torch.complex128).requires_grad_()
    again = pickle.loads(pickle.dumps(leaf))
    assert all(p.is_leaf and p.requires_grad for p in again.parts.values())


def test_vec_of_a_vec_keeps_leaf_parts_and_refuses_other_settings():
    v = SO3vec.randn(2, (1, 2), dtype=torch.complex128).requires_grad_()
    w = SO3vec(v)
    assert w.requires_grad
    w.packed().abs().sum().backward()
    assert all(p.grad is not None for p in v.parts.values())
    with pytest.raises(ValueError, match="takes no dtype"):
        SO3vec(v, dtype=torch.complex64)


def test_detach_shares_storage_and_contiguous_keeps_the_graph():
    v = SO3vec.randn(2, (1, 2), dtype=torch.complex128).requires_grad_()
    d = v.detach()
    assert not d.requires_grad and d.packed().untyped_storage().data_ptr() == v._packed.untyped_storage().data_ptr()
    t = torch.randn(8, 2, dtype=torch.complex128).t()            # non-contiguous packed leaf
    u = SO3vec.from_packed(t, (2, 2)).requires_grad_()
    assert u.contiguous().requires_grad and u.contiguous().packed().is_contiguous()


def test_parts_cannot_be_merged_in_bulk():
    v = SO3vec.randn(2, (1, 2))
    with pytest.raises(TypeError, match="cannot be removed or added in bulk"):
        v.parts |= {0: torch.zeros(2, 1, 1, dtype=v.dtype)}


def test_grad_of_a_computed_vector_is_none_without_warnings():
    import warnings
    x, y = operands(2, "complex")
    z = CGproduct(x, y)
    z.packed().abs().sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert z.grad is None


def test_in_place_change_of_a_part_that_records_gradients_is_refused_by_torch():
    x, y = operands(2, "real")
    z = CGproduct(x, y)
    with pytest.raises(RuntimeError, match="inplace"):
        z.parts[0].mul_(2)
    z.parts[0] = z.parts[0] * 2                                  # the supported way: assign
    assert z.requires_grad


def test_so3_inverse_of_a_conjugate_packed_view():
    from so3net.fourier import so3_forward, so3_grid, so3_inverse
    grid = so3_grid(4)
    coeffs = so3_forward(torch.randn(grid.size, dtype=torch.complex128), grid, 2)
    conj = SO3vec.from_packed(coeffs.packed().conj(), coeffs.tau)
    torch.testing.assert_close(so3_inverse(conj, grid),
                               so3_inverse(SO3vec.from_packed(coeffs.packed().conj().resolve_conj(), coeffs.tau), grid))
