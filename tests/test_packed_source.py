"""SO3vec.packed() returns the tensor a vector was made from only while its parts are that tensor's views."""
import pytest
import torch

from so3net.fourier import sphere_forward, sphere_grid, sphere_inverse
from so3net.types import CGproduct, SO3vec

TAU = (2, 2)


def packed_tensor(requires_grad=False):
    return torch.randn(3, SO3vec.randn(1, TAU).packed().shape[-1], dtype=torch.complex128,
                       requires_grad=requires_grad)


def test_product_output_packs_to_itself_and_gradients_flow():
    x = SO3vec.randn(3, TAU, dtype=torch.complex128).requires_grad_()
    z = CGproduct(x, x)
    assert z.packed() is z.packed()                       # no copy
    z.packed().abs().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in x.parts.values())


def test_requires_grad_after_from_packed_is_not_lost():
    v = SO3vec.from_packed(packed_tensor(), TAU).requires_grad_()
    CGproduct(v, v).packed().abs().sum().backward()
    assert all(p.grad is not None for p in v.parts.values())


def test_replaced_or_reassigned_parts_are_packed_anew():
    t = packed_tensor()
    v = SO3vec.from_packed(t.clone(), TAU)
    v.parts[1].data = torch.zeros_like(v.parts[1])           # new storage behind the same tensor object
    assert torch.equal(v.packed()[:, 2:], torch.zeros(3, 6, dtype=t.dtype))
    w = SO3vec.from_packed(t.clone(), TAU)
    w.parts[0] = w.parts[0] * 2                              # a new tensor
    torch.testing.assert_close(w.packed()[:, :2], 2 * t[:, :2])


def test_in_place_changes_of_parts_are_seen():
    t = packed_tensor()
    v = SO3vec.from_packed(t.clone(), TAU)
    v.parts[1].mul_(-1)
    torch.testing.assert_close(v.packed()[:, 2:], -t[:, 2:])


def test_non_contiguous_source_is_copied():
    t = torch.randn(8, 3, dtype=torch.complex128).t()             # (3, 8), not contiguous
    v = SO3vec.from_packed(t, TAU)
    assert v.packed() is not t and torch.equal(v.packed(), t)


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
