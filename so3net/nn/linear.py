"""Per-l complex linear mixing of fragments (the ``· W`` of a Cormorant layer).

For every l, ``y^l = x^l W^l`` with ``x^l`` the SO3part ``(B, 2l+1, n_in[l])`` and ``W^l`` a complex
``(n_in[l], n_out[l])`` matrix: W acts on the fragment index only, so it commutes with the group
action ``x^l -> D^l x^l`` (equivariant for any W). Weights are stored as real tensors
``(n_in, n_out, 2)`` (real, imaginary) so that ``Module.to(dtype)`` and every optimizer work unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

from ._layout import check_tau, join_parts, split_parts

__all__ = ["INITS", "init_complex_weight", "mix_parts", "SO3Linear"]

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


def mix_parts(parts: dict[int, torch.Tensor], weights: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """``{l: x^l @ W^l}`` for every l of ``weights`` (complex ``(n_in, n_out)`` each)."""
    out = {}
    for l, w in weights.items():
        if l not in parts:
            raise ValueError(f"mixing weights expect part l={l}, but the input has parts {sorted(parts)}")
        x = parts[l]
        if x.shape[2] != w.shape[0]:
            raise ValueError(f"part l={l} has {x.shape[2]} fragments, the weight expects {w.shape[0]}")
        out[l] = torch.matmul(x, w.to(x.dtype))
    return out


class SO3Linear(nn.Module):
    """Per-l complex mixing from type ``tau_in`` to ``tau_out`` on packed vectors (see module doc).

    Parts of ``tau_in`` above ``len(tau_out) - 1`` are dropped (the output type sets the maxl).
    """

    def __init__(self, tau_in, tau_out, init: str = "rand", gain: float = 1.0):
        super().__init__()
        self.tau_in, self.tau_out = check_tau(tau_in), check_tau(tau_out)
        missing = [l for l, n in enumerate(self.tau_out) if n and (l >= len(self.tau_in) or not self.tau_in[l])]
        if missing:
            raise ValueError(f"output parts {missing} of tau_out={self.tau_out} have no input in tau_in={self.tau_in}")
        self.weights = nn.ParameterList(
            nn.Parameter(init_complex_weight(self.tau_in[l], n, init, gain)) for l, n in enumerate(self.tau_out))

    def complex_weights(self) -> dict[int, torch.Tensor]:
        return {l: torch.view_as_complex(w) for l, w in enumerate(self.weights) if w.shape[1] > 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = mix_parts(split_parts(x, self.tau_in), self.complex_weights())
        return join_parts(parts)[0]

    def extra_repr(self) -> str:
        return f"tau_in={self.tau_in}, tau_out={self.tau_out}"
