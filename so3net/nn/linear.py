"""Per-l complex linear mixing of fragments (the ``· W`` of a Cormorant layer).

For every l, ``y^l = x^l W^l`` with ``x^l`` the SO3part ``(B, 2l+1, n_in[l])`` and ``W^l`` a complex
``(n_in[l], n_out[l])`` matrix (:meth:`so3net.SO3vec.mix`): W acts on the fragment index only, so
it commutes with the group action ``x^l -> D^l x^l`` (equivariant for any W). Weights are stored as
real tensors ``(n_in, n_out, 2)`` (real, imaginary) so that ``Module.to(dtype)`` and every
optimizer work unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from ..types import SO3type, SO3vec

__all__ = ["INITS", "init_complex_weight", "SO3Linear"]

INITS = ("rand", "randn")


def init_complex_weight(n_in: int, n_out: int, init: str = "rand", gain: float = 1.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """A real ``(n_in, n_out, 2)`` tensor holding a complex weight, initialised as in Cormorant.

    ``"rand"``: real and imaginary parts uniform on [-1, 1]; ``"randn"``: standard normal; both
    then scaled by ``gain / max(n_in, n_out)`` (the original implementation's level gain).
    """
    if init not in INITS:
        raise ValueError(f"weight init must be one of {INITS}, got {init!r}")
    shape = (n_in, n_out, 2)
    w = (2 * torch.rand(shape, generator=generator) - 1) if init == "rand" else torch.randn(shape, generator=generator)
    return w * (gain / max(n_in, n_out, 1))


class SO3Linear(nn.Module):
    """Per-l complex mixing of ``SO3vec``s from type ``tau_in`` to ``tau_out`` (see module doc).

    Parts of ``tau_in`` above ``len(tau_out) - 1`` are dropped (the output type sets the maxl).
    """

    def __init__(self, tau_in, tau_out, init: str = "rand", gain: float = 1.0):
        super().__init__()
        self.tau_in, self.tau_out = tuple(SO3type(tau_in)), tuple(SO3type(tau_out))
        missing = [l for l, n in enumerate(self.tau_out) if n and (l >= len(self.tau_in) or not self.tau_in[l])]
        if missing:
            raise ValueError(f"output parts {missing} of tau_out={self.tau_out} have no input in tau_in={self.tau_in}")
        self.weights = nn.ParameterList(
            nn.Parameter(init_complex_weight(self.tau_in[l], n, init, gain)) for l, n in enumerate(self.tau_out))

    def complex_weights(self) -> list[torch.Tensor]:
        return [torch.view_as_complex(w) for w in self.weights]

    def forward(self, x: SO3vec) -> SO3vec:
        if tuple(x.tau)[:len(self.tau_in)] != self.tau_in:
            raise ValueError(f"SO3Linear expects type {self.tau_in}, got {tuple(x.tau)}")
        weights = self.complex_weights()
        return SO3vec({l: x.parts[l] for l in range(len(weights))}, basis=x.basis).mix(weights)

    def extra_repr(self) -> str:
        return f"tau_in={self.tau_in}, tau_out={self.tau_out}"
