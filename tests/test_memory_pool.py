"""Large CPU outputs come from a pool of recycled mappings (so3net.kernels.memory): a mapping is
handed out again only when no tensor uses it, and values never depend on the pool."""
import os
import subprocess
import sys

import pytest
import torch

from so3net.kernels import memory
from so3net.types import CGproduct, SO3vec

ROWS, COLS = 600, 4096                     # 9.8 MB of float32: above HUGE_PAGE_MIN_BYTES


@pytest.fixture
def pool():
    limit = memory.pool_limit()
    memory.set_pool_limit(1 << 28)
    yield memory
    memory.set_pool_limit(limit)


def big():
    return memory.empty(ROWS, COLS, dtype=torch.float32, device=torch.device("cpu"))


def test_a_mapping_is_reused_only_when_no_tensor_uses_it(pool):
    a = big()
    a.fill_(1)
    address = a.data_ptr()
    view = a[:, :3]
    del a
    b = big()                               # a view still uses the first mapping
    assert b.data_ptr() != address
    del view
    c = big()
    assert c.data_ptr() == address          # now free: handed out again
    assert c.shape == (ROWS, COLS) and c.dtype == torch.float32


def test_the_limit_bounds_the_pool_and_zero_turns_it_off(pool):
    pool.set_pool_limit(3 * ROWS * COLS * 4 // 2)          # room for one mapping, not two
    held = [big()]
    second = big()                                         # beyond the limit: an ordinary tensor
    assert pool.pool_bytes() <= pool.pool_limit()
    assert second.untyped_storage().data_ptr() != held[0].untyped_storage().data_ptr()
    pool.set_pool_limit(0)
    assert pool.pool_bytes() > 0                           # the mapping in use stays valid
    del held
    t = big()
    assert t.untyped_storage().resizable()                 # torch.empty again
    assert pool.pool_bytes() == 0                          # and the unused mapping is gone
    with pytest.raises(ValueError, match="number of bytes"):
        pool.set_pool_limit(-1)


def test_products_are_the_same_with_and_without_the_pool(pool):
    torch.manual_seed(0)
    x = SO3vec.randn(200, (16, 16, 16), basis="real", dtype=torch.float64).requires_grad_()
    results = []
    for limit in (1 << 28, 0):
        pool.set_pool_limit(limit)
        z = CGproduct(x, x, maxl=2)
        g = torch.autograd.grad(sum(p.pow(2).sum() for p in z.parts.values()), list(x.parts.values()))
        results.append((z.packed().detach().clone(), [t.clone() for t in g]))
        del z, g
    (z1, g1), (z0, g0) = results
    assert torch.equal(z1, z0) and all(torch.equal(a, b) for a, b in zip(g1, g0))


def test_outputs_of_a_pool_mapping_survive_their_producer(pool):
    x = SO3vec.randn(200, (16, 16, 16), basis="real")
    keep = CGproduct(x, x, maxl=2).parts[2]                # only a part view is kept
    want = keep.clone()
    for _ in range(3):
        CGproduct(x.detach() * 2, x, maxl=2)               # more outputs of the same size
    assert torch.equal(keep, want)


def test_environment_setting_is_checked(monkeypatch):
    monkeypatch.setenv("SO3NET_POOL_BYTES", "lots")
    with pytest.raises(ValueError, match="SO3NET_POOL_BYTES must be a number of bytes"):
        memory._limit_from_environment()
    monkeypatch.setenv("SO3NET_POOL_BYTES", "0")
    assert memory._limit_from_environment() == 0


FAULTS_SCRIPT = """
import resource, torch
import so3net.kernels.memory as memory
keep = torch.ones(64 << 20 >> 2)                  # a live block above the churn, as a model's weights are
for _ in range(3):                                # warm: the freed blocks become reusable heap
    t = torch.ones(4 << 20); u = torch.ones(16 << 20); del t, u
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):                               # 16 and 64 MB tensors made and freed, as layers do
    t = torch.ones(4 << 20); u = torch.ones(16 << 20); del t, u
print(memory.malloc_tuned(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists only on Linux")
@pytest.mark.parametrize("tuning", ["1", "0"])
def test_malloc_tuning_keeps_freed_medium_tensors_mapped(tuning):
    """With the tuning (the default) 20 fresh 16 MB and 20 fresh 64 MB tensors fault in no new pages;
    without it glibc hands their pages back and faults them in again (4 000-16 000 faults each)."""
    env = {**os.environ, "SO3NET_MALLOC_TUNING": tuning}
    out = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    if tuned == "False" and tuning == "1":
        pytest.skip("the C library is not glibc: mallopt was not accepted")
    assert tuned == ("True" if tuning == "1" else "False")
    if tuning == "1":
        assert int(faults) < 2000, f"{faults} page faults for 40 reused 16 and 64 MB tensors"
    elif "[always]" not in _thp_mode():   # with huge pages everywhere fresh blocks fault once per 2 MiB
        assert int(faults) > 40 * 2000, f"only {faults} page faults without the tuning: the test no longer tells"


def _thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read()
    except OSError:
        return ""


def test_malloc_tuning_setting_is_checked():
    env = {**os.environ, "SO3NET_MALLOC_TUNING": "yes"}
    out = subprocess.run([sys.executable, "-c", "import so3net"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "SO3NET_MALLOC_TUNING must be 1" in out.stderr
