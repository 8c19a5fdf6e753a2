"""CG product kernels: Triton kernels for CUDA tensors and their torch twins (CPU path, oracle)."""
from .torch_cg import cg_product as torch_cg_product, cg_product_reference
