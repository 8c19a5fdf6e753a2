"""Wigner small-d for all degrees at once, by the three-term recurrence in l (numpy, float64).

For every pair ``(m, m')`` the values ``d^l_{m m'}(β)`` (so3net's ``wigner_d``: ``e^{-iβJ_y}``,
row m, column m') start at ``l0 = max(|m|, |m'|)`` from the closed form (one term of Wigner's sum)

    d^{l0}_{m m'}(β) = ± sqrt(binomial) cos(β/2)^a sin(β/2)^b,

and continue with the stable recurrence (Kostelec & Rockmore, "FFTs on the rotation group")

    sqrt(((l+1)²-m²)((l+1)²-m'²)) / (l+1) · d^{l+1}
        = (2l+1) (cos β - m m' / (l (l+1))) d^l - sqrt((l²-m²)(l²-m'²)) / l · d^{l-1}.

Work O(lmax · J · #pairs), no eigen-decompositions: fast enough to tabulate bandwidth 64 in a
moment. Pinned against :func:`so3net.wigner.wigner_d` by the tests.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def wigner_d_rows(lmax: int, beta: np.ndarray, m: np.ndarray, mp: np.ndarray) -> Iterator[np.ndarray]:
    """Yield, for l = 0..lmax, the array ``(J, P)`` of ``d^l_{m_p m'_p}(β_j)`` (zero where
    ``l < max(|m_p|, |m'_p|)``) for the pairs ``(m, mp)`` of shape ``(P,)``."""
    beta = np.asarray(beta, dtype=np.float64)
    m, mp = np.asarray(m, dtype=np.int64), np.asarray(mp, dtype=np.int64)
    l0 = np.maximum(np.abs(m), np.abs(mp))
    seed = _seed(beta, m, mp, l0)
    cos = np.cos(beta)[:, None]
    mm = (m * mp).astype(np.float64)
    prev = np.zeros((beta.size, m.size))
    cur = np.zeros((beta.size, m.size))
    for l in range(lmax + 1):
        if l > 0:
            k = l - 1  # step d^{k-1}, d^k -> d^{k+1} = d^l
            lo = np.sqrt(np.maximum(((k + 1) ** 2 - m ** 2) * ((k + 1) ** 2 - mp ** 2), 0)) / (k + 1)
            shift = mm / (k * (k + 1)) if k > 0 else np.zeros_like(mm)
            back = np.sqrt(np.maximum((k * k - m ** 2) * (k * k - mp ** 2), 0)) / k if k > 0 else np.zeros_like(mm)
            grown = k >= l0  # pairs already started
            with np.errstate(divide="ignore", invalid="ignore"):
                nxt = ((2 * k + 1) * (cos - shift) * cur - back * prev) / lo
            prev, cur = cur, np.where(grown, nxt, 0.0)
        starts = l0 == l
        cur = np.where(starts, seed, cur)
        yield cur


def _seed(beta: np.ndarray, m: np.ndarray, mp: np.ndarray, l: np.ndarray) -> np.ndarray:
    """``d^l_{m m'}(β)`` at ``l = max(|m|, |m'|)``: the single surviving term of Wigner's formula

    d^l_{m m'} = Σ_s (-1)^{m-m'+s} sqrt((l+m)!(l-m)!(l+m')!(l-m')!) / ((l+m'-s)! s! (m-m'+s)! (l-m-s)!)
                 cos(β/2)^{2l+m'-m-2s} sin(β/2)^{m-m'+2s}.
    """
    s = np.maximum(0, mp - m)  # the bounds max(0, m'-m) <= s <= min(l+m', l-m) meet at l = l0
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 2 * int(l.max(initial=0)) + 2)))])
    logmag = 0.5 * (lf[l + m] + lf[l - m] + lf[l + mp] + lf[l - mp]) \
        - (lf[l + mp - s] + lf[s] + lf[m - mp + s] + lf[l - m - s])
    sign = np.where((m - mp + s) % 2, -1.0, 1.0)
    a, b = 2 * l + mp - m - 2 * s, m - mp + 2 * s
    c, sn = np.cos(beta / 2)[:, None], np.sin(beta / 2)[:, None]
    return sign * np.exp(logmag) * np.power(c, a) * np.power(sn, b)
