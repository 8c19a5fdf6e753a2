"""The FastCG examples of Kondor's talk "Fourier space neural networks", translated to so3net.

Run: ``python examples/talk_examples.py``. Each C++ snippet of the talk is quoted above its
Python translation; the printout has the talk's format (``Part l=...:`` then one row of
``(re,im)`` pairs per fragment).

The talk's ``MyNet`` example feeds vectors of types {2,3} and {1,0,1} into ``v1 + v2``, which
has no meaning for different types (so3net raises); here both inputs have type (2,3). The
network is written as a plain function and differentiated with torch autograd (so3net's own
``NeuralNet`` engine lives in ``so3net.graph``).
"""
from __future__ import annotations

import torch

from so3net.types import CGproduct, SO3type, SO3vec, product_plan


def example_print(seed: int = 0) -> SO3vec:
    """``SO3type tau({1,1,1}); SO3vec<float> v(tau, fill::gaussian); cout << v;``"""
    torch.manual_seed(seed)
    tau = SO3type((1, 1, 1))
    v = SO3vec(tau, fill="gaussian")
    print(v)
    return v


def example_cgproduct(seed: int = 1) -> tuple[SO3vec, SO3vec]:
    """``SO3vec<float> u({1,1}, fill::gaussian), v(...); w = u + v; cg = CGproduct(u, v);``"""
    torch.manual_seed(seed)
    u = SO3vec((1, 1), fill="gaussian")
    v = SO3vec((1, 1), fill="gaussian")
    w = u + v
    print(f"w=\n{w}")
    cg = CGproduct(u, v)
    print(f"cg=\n{cg}")
    print(f"type of cg: {cg.tau}")
    return w, cg


def my_net(v1: SO3vec, v2: SO3vec) -> SO3vec:
    """The talk's ``MyNet``: ``w = v1 + v2; output = CGproduct(w, v1 + w)``."""
    w = v1 + v2
    return CGproduct(w, v1 + w)


def example_network(seed: int = 2) -> tuple[SO3vec, SO3vec]:
    """``my_net(a, b)`` and ``pack = my_net.backward(g)``: the gradient of ``Re <g, my_net(a, b)>``
    with respect to ``a`` (``pack[0]``) and ``b`` (``pack[1]``), for ``g`` of the output's type."""
    torch.manual_seed(seed)
    a = SO3vec((2, 3), fill="gaussian").requires_grad_()
    b = SO3vec((2, 3), fill="gaussian").requires_grad_()
    out = my_net(a, b)
    print(f"my_net(a,b) has type {out.tau}:\n{out}")
    g = SO3vec(out.tau, fill="gaussian")
    loss = sum((g.parts[l].conj() * out.parts[l]).real.sum() for l in out.parts)
    inputs = list(a.parts.values()) + list(b.parts.values())
    grads = torch.autograd.grad(loss, inputs)
    pack = [SO3vec(dict(enumerate(grads[:len(a)]))), SO3vec(dict(enumerate(grads[len(a):])))]
    print(f"pack[0]=\n{pack[0]}")
    return out, pack[0]


def example_program() -> str:
    """The talk's ``TPprogram`` listing: the compiled plan of ``CGproduct(u, v)`` for τ = (1,1)."""
    u = SO3vec((1, 1))
    listing = product_plan(u, u).listing()
    print(listing)
    return listing


def main() -> None:
    example_print()
    example_cgproduct()
    example_network()
    example_program()


if __name__ == "__main__":
    main()
