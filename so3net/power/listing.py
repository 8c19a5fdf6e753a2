"""Printable listing of a :class:`~so3net.power.program.PowerProgram`, after the talk's

    SPprogram TensorPower3(){
        Snode0 () () (l=0) (0x1){ input(0); }
        ...
        Snode9 (1,1,1) ((1,2)) (l=1) (1x2) weave(2){ (1,5)[0]; (1,6)[1]; }

Here an Snode is one part (degree j, l) of one level; its lines are the CG blocks that fill it:
``CG(Snode a, Snode b)[first..last]`` reads the fragments of node a (level j-1, l_prev) and of
input node b (l_in) and writes output fragments first..last. With ``fragments=True`` every
fragment is listed with its multiset (global input fragment ids) and the ls of that multiset.
"""
from __future__ import annotations

__all__ = ["program_listing"]


def _fmt(tau) -> str:
    return "(" + ",".join(str(n) for n in tau) + ")"


def _header(program) -> str:
    outs = ", ".join(f"Sym^{j} {_fmt(program.out_type(j))}" for j in program.degrees)
    naive = program.naive_flops()
    ratio = f"{naive / program.flops():.2f}x" if program.flops() else "n/a"
    return (f"SPprogram TensorPower{program.top}(tau={_fmt(program.tau)}, maxl={program.maxl}, "
            f"basis={program.basis}) -> {outs}\n"
            f"  // {len(program.plans)} CG steps, {program.flops()} flops/sample; naive repeated "
            f"CGproduct {naive} flops/sample ({ratio} more)")


def program_listing(program, fragments: bool = False) -> str:
    rows = [_header(program) + " {"]
    node: dict[tuple[int, int], int] = {}
    for l, n in enumerate(program.tau):
        if n:
            node[(1, l)] = len(node)
            rows.append(f"  Snode{node[(1, l)]} deg1 (l={l}) (x{n}){{ input({l}); }}")
    for j, plan in enumerate(program.plans, start=2):
        by_l: dict[int, list] = {}
        for p in plan.paths:
            by_l.setdefault(p.l, []).append(p)
        for L, paths in sorted(by_l.items()):
            node[(j, L)] = len(node)
            role = "out" if (j in program.degrees and L <= program.maxl) else "tmp"
            rows.append(f"  Snode{node[(j, L)]} deg{j} (l={L}) (x{plan.tau_out[L]}) {role}{{")
            for p in paths:
                rows.append(f"      CG(Snode{node[(j - 1, p.l1)]},Snode{node[(1, p.l2)]})"
                            f"[{min(p.out)}..{max(p.out)}];  // {p.size} fragments, {plan.nnz(p)} CG terms")
            if fragments:
                rows += _fragment_rows(program, j, L)
            rows.append("  }")
    rows.append("}")
    return "\n".join(rows)


def _fragment_rows(program, j: int, L: int) -> list[str]:
    ls = program.fragment_l
    return [f"        [{i}] multiset {_fmt(M)} ls {_fmt(tuple(ls[g] for g in M))}"
            for i, M in enumerate(program.multisets[j - 1][L])]
