import os
import tempfile

import torch

# every test run gets its own CG disk cache, so cache tests never see a user's files
os.environ.setdefault("SO3NET_CACHE_DIR", tempfile.mkdtemp(prefix="so3net-cg-"))
# Without a GPU the Triton kernels are tested through the interpreter, which must be switched on
# before anything imports triton (e3nn does, through torch's compiler stack). On a GPU machine the
# GPU tests run compiled: benches/gpu_all.sh unsets it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# the suite is thousands of small ops: one intra-op thread is faster and steadier on 2 cores
torch.set_num_threads(1)
