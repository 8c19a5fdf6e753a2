"""Compiled CG product plans (the talk's ``TPprogram``): frozen, hashable, cached per signature.

A plan describes a bilinear product of two packed SO(3)-vectors ``x`` (type ``tau1``) and ``y``
(type ``tau2``) into ``z`` (type ``tau_out``) as a list of *paths*. Path ``p`` reads part ``l1`` of
x and part ``l2`` of y and writes part ``l`` of z::

    z^l[m, out[k]] += sum_{m1 + m2 = m} C[m1, m2, m] * x^{l1}[m1, left[k]] * y^{l2}[m2, right[k]]

for k = 0..K-1. ``C`` is the path's coefficient block: the CG block ⟨l1 m1; l2 m2 | l m⟩ in the
complex basis (the real-basis block in the real basis). Forward plans write each output fragment
once; the backward plans of a forward plan have the same form (with ``out`` indices that repeat,
meaning accumulation) and read ``conj`` of the other operand.

Packed layout (shared with the kernels): a vector of type tau over batch B is a tensor (B, dim)
where part l occupies ``[offset(l), offset(l) + (2l+1) * tau[l])`` stored row-major as
``(2l+1, tau[l])`` — i.e. the SO3part layout ``(2l+1, n)`` flattened.

Kinds and output fragment order (part l; blocks (l1, l2) in lexicographic order):
- ``full``: all pairs (i, j), fragment ``i * n2 + j`` inside the block (GElib's order);
- ``diag``: pairs (i, i); needs n1 == n2 per block, or one side with one fragment (broadcast);
- ``square``: x with itself, blocks l1 <= l2 only; for l1 < l2 all (i, j); for l1 == l2 the
  unordered pairs i <= j when l1 + l2 - l is even and i < j when it is odd (the i == j fragment
  vanishes identically then). This is exactly Sym²: no fragment is computed twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from .cg import cg_block

__all__ = ["Path", "CGPlan", "Segment", "cg_plan", "packed_offsets", "connection_of", "KINDS", "BASES",
           "CONNECTIONS"]

KINDS = ("full", "diag", "square")
BASES = ("complex", "real")


def packed_offsets(tau: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """Offsets of each part in the packed layout, and the total dimension."""
    offsets, total = [], 0
    for l, n in enumerate(tau):
        offsets.append(total)
        total += (2 * l + 1) * n
    return tuple(offsets), total


def coefficient_block(l1: int, l2: int, l: int, basis: str) -> np.ndarray:
    """The coefficient block of a path in the given basis (float64 or complex128 array)."""
    if basis == "complex":
        return cg_block(l1, l2, l)
    from .basis import real_cg_block  # the real basis tables live with the basis change
    return real_cg_block(l1, l2, l)


#: How a path pairs fragments (:attr:`Path.connection`); every mode but "other" writes consecutive
#: output fragments ``out[0], out[0] + 1, ...``
CONNECTIONS = ("full", "channelwise", "upper", "strict_upper", "other")


def connection_of(left, right, out) -> str:
    """The connection mode that fragment maps ``left``, ``right``, ``out`` spell (see :class:`Path`)."""
    left, right, out = (np.asarray(a, dtype=np.int64) for a in (left, right, out))
    n = len(out)
    if n == 0 or not (out == out[0] + np.arange(n)).all():
        return "other"
    n1, n2 = int(left.max()) + 1, int(right.max()) + 1
    if n == n1 * n2 and (left == np.repeat(np.arange(n1), n2)).all() and (right == np.tile(np.arange(n2), n1)).all():
        return "full"
    ramp = np.arange(n)
    left_ramp, right_ramp = bool((left == ramp).all()), bool((right == ramp).all())
    if (left_ramp or right_ramp) and (left_ramp or not left.any()) and (right_ramp or not right.any()):
        return "channelwise"
    for k, name in ((0, "upper"), (1, "strict_upper")):
        i, j = np.triu_indices(n2, k=k)
        if n == len(i) and (left == i).all() and (right == j).all():
            return name
    return "other"


def _one_fragment_side(left, right) -> bool:
    return not any(left) or not any(right)


@lru_cache(maxsize=65536)
def _check_connection(p: "Path", coef_perm: tuple[int, int, int]) -> None:
    """Raise unless the path's stated connection is what its maps spell in the forward product's
    orientation (``coef_perm``: this plan's axis i is the forward's axis ``coef_perm[i]``). A block
    with a one-fragment side is full and channel-wise (or, of size 1, upper) at once."""
    if p.connection == "other":
        return
    forward = [None, None, None]
    for maps, axis in zip((p.left, p.right, p.out), coef_perm):
        forward[axis] = maps
    spelled = connection_of(*forward)
    if spelled == p.connection or (spelled == "full" and p.connection in ("channelwise", "upper")
                                   and _one_fragment_side(forward[0], forward[1])):
        return
    instead = "'other'" if spelled == "other" else f"{spelled!r} or 'other'"
    raise ValueError(f"path ({p.l1}, {p.l2}) -> {p.l} states connection {p.connection!r} but its fragment maps "
                     f"spell {spelled!r} (left {p.left}, right {p.right}, out {p.out}); state {instead}, or leave it "
                     "out to have it read off the maps")


@dataclass(frozen=True)
class Path:
    """One (l1, l2) -> l block: fragment maps ``left``, ``right``, ``out`` (tuples of ints), and
    how they pair fragments, ``connection`` (:data:`CONNECTIONS`), which the whole-plan executors
    read (the compiled kernels' tables, the outer strategy; the torch twin's per-path evaluation and
    the Triton kernels take any maps):

    - ``"full"``: every pair (i, j) of the n1 x n2 fragments, pair (i, j) at ``out[0] + i n2 + j``;
    - ``"channelwise"``: fragment i with fragment i (a side with one fragment broadcasts);
    - ``"upper"`` / ``"strict_upper"``: the pairs i <= j / i < j of n fragments of x with those of
      the same type (the symmetric square's l1 = l2 blocks), row-major;
    - ``"other"``: any other maps (evaluated path by path).

    The mode is that of the forward product: the paths of a backward plan keep it, and the plan's
    ``coef_perm`` says how their maps were permuted. The plan constructors state it; a path made
    without one gets :func:`connection_of` its maps; a :class:`CGPlan` refuses a path whose stated
    mode its maps do not spell.
    """
    l1: int
    l2: int
    l: int
    left: tuple[int, ...]
    right: tuple[int, ...]
    out: tuple[int, ...]
    connection: str = ""

    def __post_init__(self):
        if not self.connection:
            object.__setattr__(self, "connection", connection_of(self.left, self.right, self.out))
        elif self.connection not in CONNECTIONS:
            raise ValueError(f"connection must be one of {CONNECTIONS}, got {self.connection!r}")

    @property
    def size(self) -> int:
        return len(self.out)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.asarray(self.left, dtype=np.int64), np.asarray(self.right, dtype=np.int64),
                np.asarray(self.out, dtype=np.int64))


@dataclass(frozen=True)
class Segment:
    """Paths writing overlapping fragments of output part ``l``: ``out`` is the sorted union of
    their output fragments, ``paths`` their indices in the plan (in plan order)."""
    l: int
    paths: tuple[int, ...]
    out: tuple[int, ...]


@dataclass(frozen=True)
class CGPlan:
    """A compiled bilinear product program; see the module docstring for the semantics.

    ``conj_right`` marks plans that read ``conj(y)`` (backward plans of complex products);
    ``coef_perm`` gives the axis order (of (m1, m2, m) of the forward CG block) that maps to this
    plan's (left, right, out) axes.
    """
    kind: str
    tau1: tuple[int, ...]
    tau2: tuple[int, ...]
    tau_out: tuple[int, ...]
    maxl: int
    basis: str
    paths: tuple[Path, ...]
    conj_right: bool = False
    coef_perm: tuple[int, int, int] = (0, 1, 2)
    name: str = field(default="", compare=False)

    def __post_init__(self):
        for p in self.paths:
            _check_connection(p, self.coef_perm)

    # ------------------------------------------------------------- layout
    @cached_property
    def offsets1(self) -> tuple[int, ...]:
        return packed_offsets(self.tau1)[0]

    @cached_property
    def offsets2(self) -> tuple[int, ...]:
        return packed_offsets(self.tau2)[0]

    @cached_property
    def offsets_out(self) -> tuple[int, ...]:
        return packed_offsets(self.tau_out)[0]

    @property
    def dim1(self) -> int:
        return packed_offsets(self.tau1)[1]

    @property
    def dim2(self) -> int:
        return packed_offsets(self.tau2)[1]

    @property
    def dim_out(self) -> int:
        return packed_offsets(self.tau_out)[1]

    def coefficients(self, path: Path) -> np.ndarray:
        """The path's block indexed [m_left, m_right, m_out] (m + l offsets)."""
        f = self._forward_ls(path)
        return np.transpose(coefficient_block(*f, self.basis), self.coef_perm)

    def _forward_ls(self, path: Path) -> tuple[int, int, int]:
        ls = [None, None, None]
        for axis, l in zip(self.coef_perm, (path.l1, path.l2, path.l)):
            ls[axis] = l
        return tuple(ls)

    # ------------------------------------------------------------- cost model
    def nnz(self, path: Path) -> int:
        """Number of nonzero (m1, m2, m) terms of the path's block."""
        return int(np.count_nonzero(self.coefficients(path)))

    @cached_property
    def _nnz(self) -> tuple[int, ...]:
        return tuple(len(t[3]) for t in self.path_terms)

    def flops(self, batch: int = 1, weighted: bool = False) -> int:
        """Real floating-point operations, counting a fused multiply-add as two.

        Per nonzero term and entry: the complex basis scales x by the real coefficient (2), forms
        the complex product with y (6) and accumulates (2): 10; the real basis 3 (c*x, *y, +).
        ``weighted`` adds the multiplication of every entry's m-vector by its weight.
        """
        per_term, per_weight = (10, 2) if self.basis == "complex" else (3, 1)
        total = sum(n * p.size for n, p in zip(self._nnz, self.paths)) * per_term
        if weighted:
            total += per_weight * sum((2 * p.l + 1) * p.size for p in self.paths)
        return batch * total

    def bytes(self, batch: int = 1, itemsize: int = 8, weighted: bool = False, backward: bool = False) -> int:
        """Compulsory memory traffic: read x and y once, write z once (and read the weights once
        when ``weighted``). ``itemsize`` is the size of one scalar element (8 for complex64, 16
        for complex128, 4 for float32); weights are real, of half that size for complex data.
        ``backward=True`` adds the backward pass: read dz, x and y once, write dx and dy once
        (and read the weights and write their gradient)."""
        w = self.num_weights * (itemsize // 2 if self.basis == "complex" else itemsize) if weighted else 0
        total = itemsize * (self.dim1 + self.dim2 + self.dim_out) + w
        if backward:
            total += itemsize * (self.dim_out + 2 * (self.dim1 + self.dim2)) + 2 * w
        return batch * total

    def message_bytes(self, num_edges: int, num_nodes: int, itemsize: int = 8, weighted: bool = False,
                      index_itemsize: int = 4, backward: bool = False) -> int:
        """Compulsory traffic of the fused message-passing product ``out_i = sum_{e: dst=i}
        P(x_e, y_src(e))``: read the edge features and the edge's (src, dst), read every node's y
        once, write every node's output once (plus the per-edge weights when ``weighted``).
        ``backward=True`` adds: read d(out), x, y, the indices (and weights) once, write dx, dy
        (and the weights' gradient) once."""
        w = self.num_weights * (itemsize // 2 if self.basis == "complex" else itemsize) if weighted else 0
        edge = itemsize * self.dim1 + 2 * index_itemsize + w
        node = itemsize * (self.dim2 + self.dim_out)
        total = num_edges * edge + num_nodes * node
        if backward:
            total += num_edges * (edge + itemsize * self.dim1 + w) + num_nodes * (node + itemsize * self.dim2)
        return total

    # ------------------------------------------------------------- kernel tables
    @cached_property
    def weight_offsets(self) -> tuple[int, ...]:
        """Entry k of path p uses weight ``weight_offsets[p] + k``."""
        return tuple(int(s) for s in np.cumsum([0] + [p.size for p in self.paths])[:-1])

    @property
    def num_weights(self) -> int:
        """Number of per-sample weights: the total number of entries over all paths."""
        return sum(p.size for p in self.paths)

    @cached_property
    def path_terms(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]:
        """Per path ``(m_left, m_right, m_out, coef)``: its nonzero coefficients (``m + l`` indices),
        sorted by ``m_out`` then ``m_right``; ``coef`` is float64 (real in both bases)."""
        terms = []
        for p in self.paths:
            C = _real_block(self.coefficients(p), p)
            a, b, c = np.nonzero(C)
            order = np.lexsort((a, b, c))
            a, b, c = a[order], b[order], c[order]
            terms.append((a, b, c, np.ascontiguousarray(C[a, b, c], dtype=np.float64)))
        return tuple(terms)

    @cached_property
    def path_groups(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]:
        """Per path ``(out, left, right, entry)``: the entries regrouped by output fragment.

        ``out (G,)`` are the distinct output fragments in increasing order; ``left``, ``right`` and
        ``entry`` are ``(G, R)`` with R the largest number of entries per output, padded with -1:
        ``z[out[g]] += sum_r P(x[left[g, r]], y[right[g, r]])``, and ``entry[g, r]`` is the index k
        of that entry in the path (for weights). Forward plans have R = 1.
        """
        return tuple(_group_entries(*p.arrays()) for p in self.paths)

    @cached_property
    def segments(self) -> tuple[Segment, ...]:
        """Groups of paths with overlapping output fragments (see :class:`Segment`), in order of
        their first path. Distinct segments write disjoint output entries."""
        parent = list(range(len(self.paths)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        owner: dict[tuple[int, int], int] = {}
        for i, p in enumerate(self.paths):
            for o in set(p.out):
                j = owner.setdefault((p.l, o), i)
                parent[root(i)] = root(j)
        groups: dict[int, list[int]] = {}
        for i in range(len(self.paths)):
            groups.setdefault(root(i), []).append(i)
        segs = [Segment(self.paths[g[0]].l, tuple(g), tuple(sorted({o for i in g for o in self.paths[i].out})))
                for g in groups.values()]
        return tuple(sorted(segs, key=lambda s: s.paths[0]))

    @cached_property
    def covers_output(self) -> bool:
        """Whether every output entry is written by some path (otherwise kernels zero-fill)."""
        return sum(len(s.out) * (2 * s.l + 1) for s in self.segments) == self.dim_out

    def __hash__(self) -> int:
        return self._hash

    @cached_property
    def _hash(self) -> int:
        return hash((self.kind, self.tau1, self.tau2, self.tau_out, self.maxl, self.basis, self.paths,
                     self.conj_right, self.coef_perm))

    # ------------------------------------------------------------- backward
    @cached_property
    def backward_plans(self) -> tuple["CGPlan", "CGPlan"]:
        """Plans of the gradients: ``gx = P_x(gz, conj y)`` and ``gy = P_y(gz, conj x)``
        (``conj`` applies in the complex basis; real tables are real and conj is the identity).

        When this plan itself reads ``conj y`` (``conj_right``), z depends on y through conj y:
        then ``gx = P_x(gz, y)`` (``P_x`` reads y unconjugated) and ``gy = conj(P_y(gz, conj x))``.
        """
        gx_paths = tuple(Path(p.l, p.l2, p.l1, p.out, p.right, p.left, p.connection) for p in self.paths)
        gy_paths = tuple(Path(p.l, p.l1, p.l2, p.out, p.left, p.right, p.connection) for p in self.paths)
        gx = CGPlan("grad", self.tau_out, self.tau2, self.tau1, len(self.tau1) - 1, self.basis,
                    gx_paths, conj_right=not self.conj_right, coef_perm=_compose(self.coef_perm, (2, 1, 0)),
                    name=f"d/dx {self.name or self.kind}")
        gy = CGPlan("grad", self.tau_out, self.tau1, self.tau2, len(self.tau2) - 1, self.basis,
                    gy_paths, conj_right=True, coef_perm=_compose(self.coef_perm, (2, 0, 1)),
                    name=f"d/dy {self.name or self.kind}")
        return gx, gy

    # ------------------------------------------------------------- listing
    def listing(self) -> str:
        """A readable program listing in the spirit of the talk's TPprogram printout."""
        head = (f"CGPlan {self.name or self.kind}: {_fmt(self.tau1)} x {_fmt(self.tau2)} -> "
                f"{_fmt(self.tau_out)}  (maxl={self.maxl}, basis={self.basis}, "
                f"{len(self.paths)} paths, {self.flops()} flops/sample, {self.bytes()} bytes/sample)")
        rows = [head]
        for p in self.paths:
            outs = f"[{min(p.out)}..{max(p.out)}]" if p.out else "[]"
            rows.append(f"  ({p.l1},{p.l2})->{p.l}: {p.size:5d} fragments -> part {p.l} {outs}, "
                        f"{self.nnz(p)} CG terms")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.listing()


def _real_block(C: np.ndarray, p: Path) -> np.ndarray:
    """Coefficient blocks are real in both bases; a complex dtype must carry zero imaginary parts."""
    if np.iscomplexobj(C):
        if np.abs(C.imag).max(initial=0.0) > 1e-12:
            raise ValueError(f"path ({p.l1},{p.l2})->{p.l}: coefficient block has nonzero imaginary parts; "
                             f"the kernels expect real coefficient tables")
        C = C.real
    return C


def _group_entries(left: np.ndarray, right: np.ndarray, out: np.ndarray):
    """Regroup entries by output fragment; see :attr:`CGPlan.path_groups`."""
    order = np.argsort(out, kind="stable")
    uniq, start, counts = np.unique(out[order], return_index=True, return_counts=True)
    G, R = len(uniq), int(counts.max(initial=0))
    g = np.repeat(np.arange(G), counts)
    r = np.arange(len(order)) - np.repeat(start, counts)
    tables = []
    for values in (left[order], right[order], order):
        t = np.full((G, R), -1, dtype=np.int64)
        t[g, r] = values
        tables.append(t)
    return (uniq.astype(np.int64), *tables)


def _compose(first: tuple[int, int, int], then: tuple[int, int, int]) -> tuple[int, int, int]:
    """Axis order after transposing by ``first`` then by ``then``."""
    return tuple(first[i] for i in then)


def _fmt(tau) -> str:
    return "(" + ",".join(str(n) for n in tau) + ")"


def _block_pairs(kind: str, l1: int, l2: int, l: int, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(left, right, connection)`` of the (l1, l2) -> l block of a product of this kind."""
    if kind == "full":
        return np.repeat(np.arange(n1), n2), np.tile(np.arange(n2), n1), "full"
    if kind == "diag":
        if n1 != n2 and 1 not in (n1, n2):
            raise ValueError(f"diag product needs equal fragment counts per block (or one side with 1 "
                             f"fragment to broadcast), got n1={n1} at l1={l1} and n2={n2} at l2={l2}")
        n = max(n1, n2)
        return ((np.arange(n) if n1 == n else np.zeros(n, int)), (np.arange(n) if n2 == n else np.zeros(n, int)),
                "channelwise")
    # square
    if l1 < l2:
        return np.repeat(np.arange(n1), n2), np.tile(np.arange(n2), n1), "full"
    even = (l1 + l2 - l) % 2 == 0
    i, j = np.triu_indices(n1, k=0 if even else 1)
    return i, j, "upper" if even else "strict_upper"


@lru_cache(maxsize=None)
def cg_plan(tau1: tuple[int, ...], tau2: tuple[int, ...], maxl: int | None = None, kind: str = "full",
            basis: str = "complex") -> CGPlan:
    """The cached plan of a product of types ``tau1`` and ``tau2`` (tuples of fragment counts).

    ``maxl=None`` keeps every l up to l1max + l2max. For ``kind="square"``, tau2 must equal tau1.
    """
    tau1, tau2 = tuple(int(n) for n in tau1), tuple(int(n) for n in tau2)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    if any(n < 0 for n in tau1 + tau2):
        raise ValueError(f"fragment counts must be >= 0, got {tau1} and {tau2}")
    if kind == "square" and tau1 != tau2:
        raise ValueError(f"square product needs tau2 == tau1, got {tau1} and {tau2}")
    top = (len(tau1) - 1) + (len(tau2) - 1)
    maxl = top if maxl is None else int(maxl)
    if maxl < 0:
        raise ValueError(f"maxl must be >= 0, got {maxl}")
    counts = [0] * (min(maxl, top) + 1)
    paths = []
    for l1, n1 in enumerate(tau1):
        for l2, n2 in enumerate(tau2):
            if n1 == 0 or n2 == 0 or (kind == "square" and l1 > l2):
                continue
            for l in range(abs(l1 - l2), min(l1 + l2, maxl) + 1):
                left, right, connection = _block_pairs(kind, l1, l2, l, n1, n2)
                if len(left) == 0:
                    continue
                out = np.arange(counts[l], counts[l] + len(left))
                counts[l] += len(left)
                paths.append(Path(l1, l2, l, tuple(left.tolist()), tuple(right.tolist()), tuple(out.tolist()),
                                  connection))
    while len(counts) > 1 and counts[-1] == 0:
        counts.pop()
    return CGPlan(kind, tau1, tau2, tuple(counts), maxl, basis, tuple(paths), name=kind)
