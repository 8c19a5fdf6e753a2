import os
import tempfile

# every test run gets its own CG disk cache, so cache tests never see a user's files
os.environ.setdefault("SO3NET_CACHE_DIR", tempfile.mkdtemp(prefix="so3net-cg-"))
