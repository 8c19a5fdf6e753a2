import os
import tempfile

import torch

# every test run gets its own CG disk cache, so cache tests never see a user's files
os.environ.setdefault("SO3NET_CACHE_DIR", tempfile.mkdtemp(prefix="so3net-cg-"))
# the suite is thousands of small ops: one intra-op thread is faster and steadier on 2 cores
torch.set_num_threads(1)
