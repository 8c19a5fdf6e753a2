"""CG product kernels beside their peers, measured in the same process.

One line per configuration, implementation and pass (``fwd``, ``fwd+bwd``): the median and best
time of ``--repeats`` runs (interleaved across implementations), the rate in GB/s of the plan's
compulsory traffic (:meth:`so3net.plan.CGPlan.bytes`, forward or forward + backward), how far the
median is from the memory floor (compulsory bytes / the device bandwidth measured here by a large
copy) and the ratio peer time / so3net time (> 1: so3net is faster). Peers that cannot be
imported or built print one line saying why.

- CPU (default without CUDA): the full product tau = (16,16,16) x (16,16,16), maxl 2, batch 1000,
  complex64 (and real-basis float32) with the torch twin, beside e3nn's ``FullTensorProduct`` of
  the same irreps (float32) and GElib when importable. Wall and process-CPU times are printed.
- GPU (``--device cuda``): the full product at batch 20 000 (Triton, complex64 and real float32;
  e3nn); the weighted channel-wise ("uvu") products of MACE-large (128x(l=0,1,2) x sh(l<=3) -> l<=3)
  and NequIP (32x(l<=3) x sh(l<=3) -> l<=3) at batch 50 000 (e3nn, cuEquivariance,
  OpenEquivariance); the fused message-passing product on MACE-large features (4096 nodes,
  65 536 edges), beside gather -> product -> index_add and the peers' fused convolutions.

Run: ``python3 benches/bench_kernels.py [--device cpu|cuda] [--repeats 7] [--only NAME ...] [--thp]
[--threads N] [--omp-active]``. ``--thp`` sets ``THP_MEM_ALLOC_ENABLE=1`` (torch's huge-page
allocations). OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``) unless ``--omp-active``
or the variable is already set: on a shared CPU a spinning thread whose partner is descheduled
costs every parallel operation a scheduler tick. Both must be set before torch is imported, and
both apply to every implementation alike; the header prints them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None)
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per implementation and pass")
    ap.add_argument("--only", nargs="*", default=None, help="configuration names to run")
    ap.add_argument("--thp", action="store_true", help="THP_MEM_ALLOC_ENABLE=1 for torch's allocator")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--omp-active", action="store_true", help="leave OpenMP's default (spinning) wait policy")
    return ap.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.thp:
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
if ARGS is not None and not ARGS.omp_active:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from so3net.kernels import dispatch  # noqa: E402
from so3net.plan import cg_plan  # noqa: E402

PEER_ERRORS = (ImportError, RuntimeError, ValueError, TypeError, AttributeError, AssertionError, OSError)


# ------------------------------------------------------------------------------------ timing
def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_once(fn, inputs, grad, backward: bool, device: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward (+ backward) call."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    if backward:
        out = fn(*inputs)
        out.backward(grad)
    else:
        with torch.no_grad():
            fn(*inputs)
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def bandwidth(device: str) -> float:
    """Bytes per second of a large copy, counting the bytes read and written."""
    n = (1 << 31 if device == "cuda" else 1 << 28) // 4
    src, dst = torch.ones(n, device=device), torch.empty(n, device=device)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * 4 * n / best


# ------------------------------------------------------------------------------------ configurations
def rand(*shape, dtype, device, grad=True):
    return torch.randn(*shape, dtype=dtype, device=device).requires_grad_(grad)


def uvu(irreps1: str, irreps2: str, lmax: int):
    """e3nn-style channel-wise instructions: every (i, j) -> each allowed l <= lmax, mode uvu."""
    from e3nn import o3
    i1, i2 = o3.Irreps(irreps1), o3.Irreps(irreps2)
    mid, ins = [], []
    for i, (mul, ir1) in enumerate(i1):
        for j, (_, ir2) in enumerate(i2):
            for ir in ir1 * ir2:
                if ir.l <= lmax:
                    ins.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir))
    return i1, i2, o3.Irreps(mid), ins


def e3nn_full(irreps: str, lmax: int, device: str):
    from e3nn import o3
    parity = [o3.Irrep(l, p) for l in range(lmax + 1) for p in (1, -1)]
    return o3.FullTensorProduct(irreps, irreps, filter_ir_out=parity).to(device)


def e3nn_uvu(irreps1, irreps2, lmax, device):
    from e3nn import o3
    i1, i2, mid, ins = uvu(irreps1, irreps2, lmax)
    return o3.TensorProduct(i1, i2, mid, ins, shared_weights=False, internal_weights=False).to(device)


def cue_uvu(irreps1, irreps2, lmax, device):
    import cuequivariance as cue
    import cuequivariance_torch as cuet
    return cuet.ChannelWiseTensorProduct(
        cue.Irreps("O3", irreps1), cue.Irreps("O3", irreps2),
        filter_irreps_out=[cue.O3(l, p) for l in range(lmax + 1) for p in (1, -1)], layout=cue.mul_ir,
        shared_weights=False, internal_weights=False, device=device, dtype=torch.float32)


def oeq_problem(irreps1, irreps2, lmax):
    import openequivariance as oeq
    i1, i2, mid, ins = uvu(irreps1, irreps2, lmax)
    return oeq, oeq.TPProblem(oeq.Irreps(str(i1)), oeq.Irreps(str(i2)), oeq.Irreps(str(mid)), ins,
                              shared_weights=False, internal_weights=False)


def full_product(device: str, batch: int):
    """tau = (16,16,16) x (16,16,16), maxl 2: so3net complex64 and real float32 beside e3nn."""
    cplx, real = cg_plan((16, 16, 16), (16, 16, 16), 2), cg_plan((16, 16, 16), (16, 16, 16), 2, basis="real")
    irreps = "16x0e+16x1o+16x2e"
    impls = []
    for name, plan, dtype in (("so3net complex64", cplx, torch.complex64), ("so3net real f32", real, torch.float32)):
        impls.append((name, plan, dtype.itemsize, lambda p=plan, d=dtype: (
            lambda x, y, p=p: dispatch.cg_product(x, y, p),
            (rand(batch, p.dim1, dtype=d, device=device), rand(batch, p.dim2, dtype=d, device=device)),
            torch.randn(batch, p.dim_out, dtype=d, device=device))))

    def e3nn():
        tp = e3nn_full(irreps, 2, device)
        x, y = rand(batch, tp.irreps_in1.dim, dtype=torch.float32, device=device), rand(
            batch, tp.irreps_in2.dim, dtype=torch.float32, device=device)
        return tp, (x, y), torch.randn(batch, tp.irreps_out.dim, device=device)
    impls.append(("e3nn 0.6 FullTensorProduct f32", real, 4, e3nn))
    if device == "cpu":
        impls.append(("GElib CGproduct", cplx, 8, lambda: gelib_product(batch)))
    return impls


def gelib_product(batch: int):
    """GElib 0.2.x: ``SO3vec.randn(b, {l: n})`` (a dict type), parts a dict of (b, 2l+1, n) tensors."""
    import gelib
    tau = {0: 16, 1: 16, 2: 16}
    x, y = gelib.SO3vec.randn(batch, tau), gelib.SO3vec.randn(batch, tau)
    if len(x.parts) != len(tau):
        raise RuntimeError(f"GElib SO3vec.randn made parts {sorted(x.parts)}, expected {sorted(tau)}")
    for part in list(x.parts.values()) + list(y.parts.values()):   # (SO3vec.requires_grad_ is a classmethod in 0.2.7)
        part.requires_grad_()
    z = gelib.CGproduct(x, y, 2)
    grad = torch.cat([torch.randn_like(p).flatten(1) for p in z.parts.values()], 1)

    class Wrap:
        def __call__(self, a, b):
            out = gelib.CGproduct(a, b, 2)
            return torch.cat([p.flatten(1) for p in out.parts.values()], 1)
    return Wrap(), (x, y), grad


def channelwise(device: str, batch: int, mul: int, ls: tuple[int, ...], lmax: int):
    """Weighted channel-wise product ``mul x (l in ls)`` x sh(l <= lmax) -> l <= lmax, real f32."""
    tau1 = tuple(mul if l in ls else 0 for l in range(max(ls) + 1))
    plan = cg_plan(tau1, (1,) * (lmax + 1), lmax, "diag", "real")
    parity = "eo"
    irreps1 = "+".join(f"{mul}x{l}{parity[l % 2]}" for l in ls)
    irreps2 = "+".join(f"1x{l}{parity[l % 2]}" for l in range(lmax + 1))
    f32 = dict(dtype=torch.float32, device=device)

    def ours():
        return (lambda x, y, w: dispatch.weighted_product(x, y, plan, w),
                (rand(batch, plan.dim1, **f32), rand(batch, plan.dim2, **f32), rand(batch, plan.num_weights, **f32)),
                torch.randn(batch, plan.dim_out, **f32))

    def peer(tp, numel, dim_out):
        inputs = (rand(batch, tp_dim(irreps1), **f32), rand(batch, tp_dim(irreps2), **f32), rand(batch, numel, **f32))
        return tp, inputs, torch.randn(batch, dim_out, **f32)

    def e3nn():
        tp = e3nn_uvu(irreps1, irreps2, lmax, device)
        return peer(tp, tp.weight_numel, tp.irreps_out.dim)

    def cue():
        tp = cue_uvu(irreps1, irreps2, lmax, device)
        return peer(tp, tp.weight_numel, tp.irreps_out.dim)

    def oeq():
        lib, problem = oeq_problem(irreps1, irreps2, lmax)
        tp = lib.TensorProduct(problem, torch_op=True)
        return peer(tp, problem.weight_numel, uvu(irreps1, irreps2, lmax)[2].dim)
    return [("so3net triton real f32", plan, 4, ours), ("e3nn 0.6 TensorProduct uvu", plan, 4, e3nn),
            ("cuEquivariance ChannelWiseTP", plan, 4, cue), ("OpenEquivariance TensorProduct", plan, 4, oeq)]


def tp_dim(irreps: str) -> int:
    from e3nn import o3
    return o3.Irreps(irreps).dim


def message_passing(device: str, nodes: int, edges: int, mul: int = 128, lmax: int = 3):
    """Fused out_i = sum_{e: dst=i} w_e CG(sh_e, F_src(e)) on MACE-large features."""
    plan = cg_plan((1,) * (lmax + 1), (mul, mul, mul), lmax, "diag", "real")
    f32 = dict(dtype=torch.float32, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    src = torch.randint(0, nodes, (edges,), device=device, generator=gen)
    dst = torch.sort(torch.randint(0, nodes, (edges,), device=device, generator=gen)).values
    irreps_node, irreps_sh = f"{mul}x0e+{mul}x1o+{mul}x2e", "+".join(f"1x{l}{'eo'[l % 2]}" for l in range(lmax + 1))

    def inputs():
        return (rand(edges, plan.dim1, **f32), rand(nodes, plan.dim2, **f32), rand(edges, plan.num_weights, **f32))

    def fused():
        return (lambda e, n, w: dispatch.message_passing_product(e, n, src, dst, plan, w), inputs(),
                torch.randn(nodes, plan.dim_out, **f32))

    def unfused():
        def fn(e, n, w):
            msgs = dispatch.weighted_product(e, n[src], plan, w)
            return msgs.new_zeros(nodes, plan.dim_out).index_add(0, dst, msgs)
        return fn, inputs(), torch.randn(nodes, plan.dim_out, **f32)

    def oeq():
        lib, problem = oeq_problem(irreps_node, irreps_sh, lmax)
        conv = lib.TensorProductConv(problem, deterministic=False)
        x, y = rand(nodes, tp_dim(irreps_node), **f32), rand(edges, tp_dim(irreps_sh), **f32)
        w = rand(edges, problem.weight_numel, **f32)
        out_dim = uvu(irreps_node, irreps_sh, lmax)[2].dim
        return (lambda a, b, c: conv(a, b, c, dst, src), (x, y, w), torch.randn(nodes, out_dim, **f32))

    def cue():
        tp = cue_uvu(irreps_node, irreps_sh, lmax, device)
        x, y = rand(nodes, tp_dim(irreps_node), **f32), rand(edges, tp_dim(irreps_sh), **f32)
        w = rand(edges, tp.weight_numel, **f32)
        return (lambda a, b, c: tp(a, b, c, indices_1=src, indices_out=dst, size_out=nodes), (x, y, w),
                torch.randn(nodes, tp.irreps_out.dim, **f32))
    return [("so3net fused (triton)", plan, 4, fused), ("so3net gather+product+index_add", plan, 4, unfused),
            ("OpenEquivariance TensorProductConv", plan, 4, oeq),
            ("cuEquivariance ChannelWiseTP indexed", plan, 4, cue)]


def configurations(device: str):
    if device == "cpu":
        return {"full16 batch 1000": (full_product, dict(batch=1000), None)}
    return {
        "full16 batch 20000": (full_product, dict(batch=20000), None),
        "MACE-large uvu batch 50000": (channelwise, dict(batch=50000, mul=128, ls=(0, 1, 2), lmax=3), None),
        "NequIP uvu batch 50000": (channelwise, dict(batch=50000, mul=32, ls=(0, 1, 2, 3), lmax=3), None),
        "MACE-large message passing 4096 nodes 65536 edges": (message_passing, dict(nodes=4096, edges=65536),
                                                            (4096, 65536)),
    }


# ------------------------------------------------------------------------------------ reporting
def measure(config, device: str, repeats: int, bw: float):
    builder, kwargs, graph = config
    built, reference = [], {}
    for name, plan, itemsize, make in builder(device, **kwargs):
        try:
            fn, inputs, grad = make()
            run_once(fn, inputs, grad, True, device)      # warm-up: compilation, tables, allocator
            built.append((name, plan, itemsize, fn, inputs, grad))
        except PEER_ERRORS as err:
            first = str(err).splitlines()[0][:90] if str(err) else ""
            print(f"  {name:38s} unavailable: {type(err).__name__}: {first}")
    for backward in (False, True):
        times = {name: [] for name, *_ in built}
        for _ in range(repeats):
            for name, plan, itemsize, fn, inputs, grad in built:
                times[name].append(run_once(fn, inputs, grad, backward, device))
        for name, plan, itemsize, *_ in built:
            walls = [t[0] for t in times[name]]
            med, best = statistics.median(walls), min(walls)
            cpu = min(t[1] for t in times[name])
            if graph is not None:
                nbytes = plan.message_bytes(graph[1], graph[0], itemsize, weighted=True, backward=backward)
            else:
                nbytes = plan.bytes(kwargs["batch"], itemsize, weighted=builder is channelwise, backward=backward)
            key = ("bwd" if backward else "fwd")
            reference.setdefault(key, med)
            extra = f" cpu {cpu * 1e3:7.1f} ms" if device == "cpu" else ""
            print(f"  {name:38s} {'fwd+bwd' if backward else 'fwd':7s} median {med * 1e3:8.2f} ms  best "
                  f"{best * 1e3:8.2f} ms{extra}  {nbytes / med / 1e9:7.1f} GB/s  floor x{med * bw / nbytes:5.1f}  "
                  f"ratio {med / reference[key]:5.2f}")


def main(args) -> None:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (7 if device == "cpu" else 20)
    bw = bandwidth(device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"device: {name}; copy bandwidth {bw / 1e9:.1f} GB/s; torch {torch.__version__}; "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; repeats {repeats}")
    print("columns: median / best wall time, compulsory GB/s at the median, median / memory floor, "
          "median / first implementation's median")
    for title, config in configurations(device).items():
        if args.only and not any(o.lower() in title.lower() for o in args.only):
            continue
        print(title)
        measure(config, device, repeats, bw)
        sys.stdout.flush()


if __name__ == "__main__":
    main(ARGS)
