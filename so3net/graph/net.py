"""The talk's user API: ``Parameter``, ``SO3vecVar``, ``Input`` and ``NeuralNet``.

A ``NeuralNet`` subclass declares its graph once, in ``__init__``, as in the talk::

    class MyNet(NeuralNet):
        def __init__(self):
            super().__init__()
            v1, v2 = Input(), Input()
            w = v1 + v2
            self.output = CGproduct(w, v1 + w)

``Input()`` makes a symbolic Variable: every op applied to it is recorded, not run. ``net(a, b)``
re-runs the recorded ops on the values (inputs in the order the ``Input``s were created),
recording an ordinary engine graph, and returns the output value(s); ``net.backward(g)`` returns
the gradients with respect to the inputs, in input order, and accumulates the gradients of the
net's ``Parameter``s into their torch ``.grad``. A subclass may instead define ``forward(self,
*args)`` and be called eagerly, like a ``torch.nn.Module``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from .engine import Variable, _Deferred, backward

__all__ = ["Parameter", "SO3vecVar", "Input", "NeuralNet"]


class Parameter(Variable):
    """A trainable leaf wrapping a ``torch.nn.Parameter`` (``.tensor``).

    Its value is always the current content of ``.tensor`` (so a ``torch.optim`` step is seen by
    the next forward); ``backward`` accumulates into ``.tensor.grad``, which is what the optimiser
    reads. ``.grad`` is that gradient as a Variable (recorded when ``create_graph=True``).
    """
    __slots__ = ("tensor", "_grad_var")

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Variable):
            data = data.value
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"Parameter expects a torch tensor, got {type(data).__name__}")
        t = data if isinstance(data, torch.nn.Parameter) else torch.nn.Parameter(data.detach().clone(), requires_grad)
        self.tensor, self._grad_var = t, None
        self.requires_grad, self.node, self.symbolic = t.requires_grad, None, False

    @property
    def value(self) -> torch.Tensor:
        return self.tensor.detach()

    @property
    def grad(self) -> Variable | None:
        g = self.tensor.grad
        if g is None:
            return None
        if self._grad_var is not None and self._grad_var[1] is g:
            return self._grad_var[0]
        return Variable(g)

    @grad.setter
    def grad(self, g) -> None:
        self.tensor.grad = None if g is None else (g.value if isinstance(g, Variable) else g).detach().clone()
        self._grad_var = None

    def accumulate_grad(self, g: Variable) -> None:
        old = self.grad
        new = g if old is None else old + g
        self.tensor.grad = new.value.detach().clone()
        self._grad_var = (new, self.tensor.grad)

    def __repr__(self):
        return f"Parameter({self.tensor.detach()!r})"


class SO3vecVar(Variable):
    """An SO3vec leaf that requires grad (eager use): ``u = SO3vecVar(a); z = CGproduct(u, u);
    z.backward(g); u.grad``."""
    __slots__ = ()

    def __init__(self, value, requires_grad: bool = True):
        if not hasattr(value, "parts") or not hasattr(value, "tau"):
            raise TypeError(f"SO3vecVar expects an SO3vec, got {type(value).__name__}")
        super().__init__(value, requires_grad)


_building: list[list["Input"]] = []


class Input(Variable):
    """A symbolic input of a ``NeuralNet``, declared in its ``__init__``; inputs are matched to the
    arguments of ``net(...)`` in creation order. ``tau`` (optional) is checked at call time."""
    __slots__ = ("tau", "index")

    def __init__(self, tau=None):
        if not _building:
            raise RuntimeError("Input() declares an input of a NeuralNet: create it inside the __init__ of a "
                               "NeuralNet subclass (for eager use wrap values with SO3vecVar or Variable)")
        super().__init__(None, True, None, symbolic=True)
        self.tau = None if tau is None else tuple(tau)
        self.index = len(_building[-1])
        _building[-1].append(self)

    def bind(self, arg) -> Variable:
        """The Variable that stands for this input in one run (symbolic while tracing an enclosing net)."""
        if isinstance(arg, Variable) and arg.symbolic:
            return arg
        value = arg.value if isinstance(arg, Variable) else arg
        if self.tau is not None and tuple(getattr(value, "tau", ())) != self.tau:
            raise ValueError(f"input {self.index} is declared with type {self.tau}, got "
                             f"{getattr(value, 'tau', type(value).__name__)}")
        if isinstance(arg, Variable):
            return arg
        return Variable(arg, requires_grad=_differentiable(arg))

    def __repr__(self):
        return f"Input({self.index}{'' if self.tau is None else f', tau={self.tau}'})"


def _differentiable(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() or value.is_complex()
    return hasattr(value, "parts")


class _NetMeta(type):
    """Collects the ``Input``s created while a NeuralNet's ``__init__`` runs (nets may nest)."""

    def __call__(cls, *args, **kwargs):
        _building.append([])
        try:
            net = super().__call__(*args, **kwargs)
        finally:
            inputs = _building.pop()
        net._inputs = inputs
        return net


class NeuralNet(metaclass=_NetMeta):
    """Base class of networks built from engine ops (see the module docstring)."""

    def __init__(self):
        self.output = None
        self._inputs: list[Input] = []
        self._scheduled_nodes = None
        self._last = None

    # ----------------------------------------------------------------- running
    def __call__(self, *args):
        if type(self).forward is not NeuralNet.forward:
            return self.forward(*args)
        if len(args) != len(self._inputs):
            raise TypeError(f"{type(self).__name__} declares {len(self._inputs)} Input(s), got {len(args)} argument(s)")
        bound = [inp.bind(a) for inp, a in zip(self._inputs, args)]
        env = {id(inp): v for inp, v in zip(self._inputs, bound)}
        for sym, node in self._compiled():
            env[id(sym)] = node.func(*_substitute(node.args, env), **_substitute(node.kwargs, env))
        outs = [env.get(id(o), o) for o in self._outputs()]
        if any(v.symbolic for v in bound):  # called while tracing an enclosing net
            return outs[0] if len(outs) == 1 else tuple(outs)
        self._last = (bound, outs)
        eager = any(isinstance(a, Variable) for a in args)
        result = outs if eager else [o.value for o in outs]
        return result[0] if len(result) == 1 else tuple(result)

    def forward(self, *args):
        """Optional eager definition; by default the net replays the graph declared in ``__init__``."""
        raise TypeError(f"{type(self).__name__} defines neither self.output nor forward()")

    def backward(self, *gradients, retain_graph: bool = False, create_graph: bool = False):
        """Gradients of the last run's outputs contracted with ``gradients`` (one per output), with
        respect to its inputs: a list in input order (values; zeros for an unused input). Parameter
        gradients are accumulated into their ``.grad``."""
        if self._last is None:
            raise RuntimeError("backward() needs a forward run first: call net(...) with values")
        inputs, outs = self._last
        if len(gradients) != len(outs):
            raise TypeError(f"{type(self).__name__} has {len(outs)} output(s); backward got {len(gradients)} gradient(s)")
        backward(outs, list(gradients), retain_graph=retain_graph, create_graph=create_graph)
        if not retain_graph and not create_graph:
            self._last = None
        return [(v.grad if create_graph else v.grad.value) if v.grad is not None else _zeros_like(v.value)
                for v in inputs]

    def _outputs(self) -> list:
        out = self.output
        if out is None:
            raise RuntimeError(f"{type(self).__name__}.__init__ must set self.output (a Variable or a list of them)")
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _compiled(self):
        """The deferred nodes between the inputs and the outputs, in execution order (cached)."""
        if self._scheduled_nodes is None:
            self._scheduled_nodes = _schedule(self._outputs(), self._inputs, type(self).__name__)
        return self._scheduled_nodes

    # ----------------------------------------------------------------- parameters
    def named_parameters(self, prefix: str = ""):
        """``(name, Parameter)`` pairs of this net and its sub-nets (attributes, lists, dicts)."""
        seen = set()
        for name, p in _walk(self, prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def parameters(self):
        """The torch tensors (``torch.nn.Parameter``) to hand to a ``torch.optim`` optimiser."""
        return [p.tensor for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for _, p in self.named_parameters():
            p.grad = None

    def state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict((name, p.tensor.detach()) for name, p in self.named_parameters())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        own = dict(self.named_parameters())
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, t in state.items():
            if name in own:
                p = own[name].tensor
                if tuple(t.shape) != tuple(p.shape):
                    raise ValueError(f"load_state_dict: {name} has shape {tuple(p.shape)}, got {tuple(t.shape)}")
                with torch.no_grad():
                    p.copy_(t)

    def to(self, device=None, dtype=None) -> "NeuralNet":
        for _, p in self.named_parameters():
            p.tensor.data = p.tensor.data.to(device=device, dtype=dtype)
        return self


def _walk(obj, prefix: str):
    for name, value in vars(obj).items():
        if name.startswith("_") or name == "output":
            continue
        yield from _walk_value(value, prefix + name)


def _walk_value(value, name: str):
    if isinstance(value, Parameter):
        yield name, value
    elif isinstance(value, NeuralNet):
        yield from _walk(value, name + ".")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk_value(v, f"{name}.{i}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_value(v, f"{name}.{k}")


def _substitute(obj, env):
    if isinstance(obj, Variable) and obj.symbolic:
        return env[id(obj)]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_substitute(o, env) for o in obj)
    if isinstance(obj, dict):
        return {k: _substitute(v, env) for k, v in obj.items()}
    return obj


def _schedule(outputs, inputs, name: str):
    """Symbolic Variables reachable from ``outputs``, every one after its arguments (iterative)."""
    allowed = {id(i) for i in inputs}
    order, seen, stack = [], set(), [(o, False) for o in outputs if isinstance(o, Variable) and o.symbolic]
    while stack:
        v, done = stack.pop()
        if done:
            order.append((v, v.node))
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        if not isinstance(v.node, _Deferred):
            if id(v) not in allowed:
                raise RuntimeError(f"{name}: the output depends on an Input that was not declared in this net")
            continue
        stack.append((v, True))
        stack.extend((p, False) for p in v.node.parents if id(p) not in seen)
    return order


def _zeros_like(value):
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    return value._map(lambda l, p: torch.zeros_like(p))
