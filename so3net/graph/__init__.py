"""so3net's define-by-run engine: Variables, ops with backward passes of any order, the talk's
``NeuralNet``/``Input``/``SO3vecVar``/``Parameter``, and a torch bridge for the CG kernels.

See docs/engine.md. Modules: :mod:`.engine` (Variable, Function, backward walk, ``grad``,
``no_grad``), :mod:`.ops` (tensor ops), :mod:`.so3ops` (SO3vec ops and CG products),
:mod:`.products` (the kernels' bilinear product and weight gradient as engine ops),
:mod:`.geometry` (spherical harmonics, distances, radial functions), :mod:`.net` (user API),
:mod:`.bridge` (the kernels' ``torch.autograd.Function``s for plain PyTorch code), :mod:`.torch_fn`
(any torch function as an engine op, differentiable to any order).
"""
from .engine import Variable, Function, no_grad, enable_grad, is_grad_enabled, grad, backward, deferrable
from .ops import (add, sub, neg, mul, div, pow, exp, log, sin, cos, tanh, sigmoid, relu, silu, sqrt, matmul,
                  transpose, sum, mean, reshape, expand, sum_to, conj, real, imag, as_complex, index, gather,
                  scatter_sum, cat)
from .so3ops import (part, from_parts, take, fragments, oplus, scale, fragment_scale, inp, norm2, norm, mix,
                     CGproduct, DiagCGproduct, CGsquare, message_passing)
from .products import pack, unpack, bilinear, plan_product, plan_message_passing
from .geometry import sph, spherical_harmonics, distance, gaussian_rbf, cosine_cutoff
from .net import Parameter, SO3vecVar, Input, NeuralNet
from .bridge import cg_product as torch_cg_product
from .torch_fn import torch_fn

__all__ = ["Variable", "Function", "no_grad", "enable_grad", "is_grad_enabled", "grad", "backward", "deferrable",
           "add", "sub", "neg", "mul", "div", "pow", "exp", "log", "sin", "cos", "tanh", "sigmoid", "relu", "silu",
           "sqrt", "matmul", "transpose", "sum", "mean", "reshape", "expand", "sum_to", "conj", "real", "imag",
           "as_complex", "index", "gather", "scatter_sum", "cat",
           "part", "from_parts", "take", "fragments", "oplus", "scale", "fragment_scale", "inp", "norm2", "norm",
           "mix", "CGproduct", "DiagCGproduct", "CGsquare", "message_passing",
           "pack", "unpack", "bilinear", "plan_product", "plan_message_passing",
           "sph", "spherical_harmonics", "distance", "gaussian_rbf", "cosine_cutoff",
           "Parameter", "SO3vecVar", "Input", "NeuralNet", "torch_cg_product", "torch_fn"]
