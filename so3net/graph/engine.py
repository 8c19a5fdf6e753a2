"""The define-by-run engine: ``Variable``, ``Function``, the backward walk, ``grad``, ``no_grad``.

A ``Variable`` holds a value (a torch tensor or an ``SO3vec``). Applying a ``Function`` to
Variables computes the value at once and, when gradients are enabled and an input requires them,
records the function as the output's node (define-by-run). ``backward`` walks the recorded graph in
reverse topological order, iteratively (no recursion, so deep graphs are fine).

Every ``Function.backward`` is written with the engine's own forward ops. With
``create_graph=False`` the walk runs with recording switched off, so it costs about what a hand
written backward would; with ``create_graph=True`` the walk itself is recorded and the gradients
are Variables that can be differentiated again, to any order.

Complex convention (torch's): the gradient of a real loss L with respect to a complex value z is
``dL/dRe z + i dL/dIm z`` (twice the conjugate Wirtinger derivative). For a holomorphic map with
Jacobian J this makes the vector-Jacobian product ``J^H g``; for a real input of a complex map it is
the real part of that. The results therefore equal ``torch.autograd`` exactly.

Symbolic use: a Variable without a value (an ``Input``) makes every op applied to it *deferred*:
the op and its arguments are recorded and re-executed later with real values (``NeuralNet``).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

__all__ = ["Variable", "Function", "no_grad", "enable_grad", "is_grad_enabled", "grad", "backward",
           "deferrable", "as_variable"]


class _Mode(threading.local):
    enabled = True


_mode = _Mode()


def is_grad_enabled() -> bool:
    """Whether ops applied now record graph nodes."""
    return _mode.enabled


@contextmanager
def _set_grad(enabled: bool):
    previous, _mode.enabled = _mode.enabled, enabled
    try:
        yield
    finally:
        _mode.enabled = previous


def no_grad():
    """Context manager: ops inside record nothing (their outputs do not require grad)."""
    return _set_grad(False)


def enable_grad():
    """Context manager: switch recording back on inside a ``no_grad`` block."""
    return _set_grad(True)


class Variable:
    """A value in the graph: ``value`` (tensor or SO3vec, ``None`` while symbolic), ``grad``
    (a Variable, filled by ``backward`` on leaves that require grad) and ``requires_grad``.

    ``node`` is the Function that produced it (``None`` for leaves). Arithmetic operators build
    engine ops, so ``u + v``, ``u * w``, ``x @ W``, ``x[idx]`` are recorded like any other op.
    """
    __slots__ = ("value", "grad", "requires_grad", "node", "symbolic", "__weakref__")
    __array_priority__ = 1000  # so ``tensor * Variable`` lands in Variable.__rmul__

    def __init__(self, value=None, requires_grad: bool = False, node: "Function | None" = None,
                 symbolic: bool = False):
        if isinstance(value, Variable):
            raise TypeError("Variable expects a tensor or an SO3vec as its value, got a Variable")
        if isinstance(value, torch.Tensor) and value.requires_grad:
            value = value.detach()  # the engine records its own graph; torch's is not needed
        self.value = value
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.node = node
        self.symbolic = symbolic

    @property
    def is_leaf(self) -> bool:
        return self.node is None

    @property
    def shape(self):
        """The value's shape (a tensor's shape; an SO3vec's batch shape)."""
        v = self.value
        return v.shape if isinstance(v, torch.Tensor) else v.batch

    @property
    def tau(self):
        """The SO3vec value's type."""
        return self.value.tau

    @property
    def dtype(self):
        return self.value.dtype

    def detach(self) -> "Variable":
        """The same value, cut from the graph."""
        return Variable(self.value)

    def zero_grad(self) -> None:
        self.grad = None

    def accumulate_grad(self, g: "Variable") -> None:
        """``self.grad += g`` (recorded when called with recording on, as in create_graph)."""
        self.grad = g if self.grad is None else self.grad + g

    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False):
        """Accumulate d(self)/d(leaf) contracted with ``gradient`` into every leaf's ``.grad``.

        ``gradient`` defaults to 1 for a single-element real value and is required otherwise.
        """
        backward([self], None if gradient is None else [gradient], retain_graph, create_graph)

    def __repr__(self):
        if self.symbolic:
            return f"Variable(<symbolic: {self.node.name if self.node else 'input'}>)"
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Variable({self.value!r}{flag})"

    def __str__(self):
        return "<symbolic Variable>" if self.symbolic else str(self.value)

    def __len__(self):
        return len(self.value)


def as_variable(x) -> Variable:
    """``x`` itself if it is a Variable, otherwise a constant Variable holding ``x``."""
    return x if isinstance(x, Variable) else Variable(x)


# --------------------------------------------------------------------------------------- ops
class _Deferred:
    """Node of a symbolic Variable: ``func(*args, **kwargs)`` to run once inputs have values."""
    __slots__ = ("func", "args", "kwargs", "name")

    def __init__(self, func, args, kwargs, name):
        self.func, self.args, self.kwargs, self.name = func, args, kwargs, name

    @property
    def parents(self):
        return tuple(_symbolic_leaves_of(self.args, self.kwargs))


def _symbolic_leaves_of(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        for b in (a if isinstance(a, (list, tuple)) else (a,)):
            if isinstance(b, Variable) and b.symbolic:
                yield b


def _any_symbolic(args, kwargs) -> bool:
    for group in (args, kwargs.values() if kwargs else ()):
        for a in group:
            if isinstance(a, Variable):
                if a.symbolic:
                    return True
            elif isinstance(a, (list, tuple)) and any(isinstance(b, Variable) and b.symbolic for b in a):
                return True
    return False


def deferrable(func):
    """Decorator: called with a symbolic Variable among its arguments (or inside a list/tuple
    argument), ``func`` is not run but recorded, to be re-run by ``NeuralNet`` with real values."""
    def wrapper(*args, **kwargs):
        if _any_symbolic(args, kwargs):
            return Variable(None, True, _Deferred(wrapper, args, kwargs, func.__name__), symbolic=True)
        return func(*args, **kwargs)
    wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = func.__name__, func.__qualname__, func.__doc__
    wrapper.__wrapped__ = func
    return wrapper


class Function:
    """One primitive. Subclasses define ``forward(self, *values, **static)`` -> value and
    ``backward(self, g)`` -> one gradient (Variable or None) per positional input, written with
    engine ops on ``self.parents`` (the input Variables) so that it is itself differentiable.

    ``self.needs[i]`` says whether input i requires a gradient (skip work when it does not).
    """
    @classmethod
    def apply(cls, *args, **static):
        """Run the op on Variables (or plain values, taken as constants) and record it."""
        if _any_symbolic(args, static):
            return Variable(None, True, _Deferred(cls.apply, args, static, cls.__name__), symbolic=True)
        parents = tuple(a if isinstance(a, Variable) else Variable(a) for a in args)
        if static:  # static arguments may arrive as Variables (index tensors fed to a NeuralNet)
            static = {k: v.value if isinstance(v, Variable) else v for k, v in static.items()}
        fn = cls.__new__(cls)
        value = fn.forward(*[p.value for p in parents], **static)
        if _mode.enabled:
            needs = tuple(p.requires_grad for p in parents)
            if any(needs):
                fn.parents, fn.needs = parents, needs
                return Variable(value, True, fn)
        return Variable(value)

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, *values, **static):
        raise TypeError(f"{type(self).__name__} does not define forward")

    def backward(self, g: Variable):
        raise TypeError(f"{type(self).__name__} is not differentiable")


class _Freed:
    """Stands in for ``parents`` of a node whose graph was released by ``backward``."""


# --------------------------------------------------------------------------------------- walk
def _toposort(roots):
    """Variables reachable from ``roots`` through recorded nodes, every node after its inputs."""
    order, seen, stack = [], set(), [(r, False) for r in roots]
    while stack:
        v, done = stack.pop()
        if done:
            order.append(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        stack.append((v, True))
        if v.node is not None:
            if v.node.parents is _Freed:
                raise RuntimeError("backward through a graph a second time: its nodes were released by "
                                   "the first backward; pass retain_graph=True to the first call")
            stack.extend((p, False) for p in v.node.parents if p.requires_grad and id(p) not in seen)
    return order


def _seed(output: Variable, gradient) -> Variable:
    if output.symbolic:
        raise RuntimeError("cannot differentiate a symbolic Variable: run the NeuralNet on values first")
    if not output.requires_grad:
        raise RuntimeError("the output does not require grad: no input of the computation that made it "
                           "requires grad (or it was made inside no_grad())")
    if gradient is None:
        v = output.value
        if not (isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex()):
            raise RuntimeError("gradient can be omitted only for a real single-element output; pass the "
                               f"gradient (same type and shape as the output), got a {type(v).__name__}"
                               + (f" of shape {tuple(v.shape)} and dtype {v.dtype}" if isinstance(v, torch.Tensor) else ""))
        return Variable(torch.ones_like(v))
    g = as_variable(gradient)
    shape = lambda x: tuple(x.shape) if isinstance(x, torch.Tensor) else (type(x).__name__, tuple(getattr(x, "tau", ())))
    if shape(g.value) != shape(output.value):
        raise ValueError(f"the gradient must match the output: expected {shape(output.value)}, got {shape(g.value)} "
                         "(shape of a tensor; kind and type of an SO3vec)")
    return g


def _run(outputs, gradients, targets, create_graph, retain_graph):
    """Propagate gradients from ``outputs``; return ``{id(target): grad}`` for ``targets`` (None:
    every leaf that requires grad) as ``{id: (variable, grad)}``; each gradient is complete when it
    is stored, because a Variable is visited only after every node that consumes it."""
    outputs = list(outputs)
    gradients = [None] * len(outputs) if gradients is None else list(gradients)
    if len(gradients) != len(outputs):
        raise ValueError(f"got {len(gradients)} gradients for {len(outputs)} outputs")
    grads = {}
    for out, g in zip(outputs, gradients):
        g = _seed(out, g)
        grads[id(out)] = g if id(out) not in grads else grads[id(out)] + g
    order = _toposort(outputs)
    wanted = None if targets is None else {id(t) for t in targets}
    useful = _useful(order, wanted)
    found = {}
    retain = create_graph if retain_graph is None else retain_graph
    with _set_grad(create_graph):
        for v in reversed(order):
            g = grads.pop(id(v), None)
            if g is None:
                continue
            if wanted is None and v.node is None or wanted is not None and id(v) in wanted:
                found[id(v)] = (v, g)
            fn = v.node
            if fn is None or useful is not None and id(v) not in useful:
                continue
            for p, gp in zip(fn.parents, fn.backward(g)):
                if gp is not None and p.requires_grad:
                    grads[id(p)] = gp if id(p) not in grads else grads[id(p)] + gp
            if not retain:
                fn.__dict__.clear()  # saved tensors go with the graph
                fn.parents = _Freed
    return found


def _useful(order, wanted):
    """Ids of Variables whose node's backward leads to a wanted target (None: all of them)."""
    if wanted is None:
        return None
    useful, reach = set(), set(wanted)
    for v in order:  # every Variable comes after its inputs
        if v.node is not None and any(id(p) in reach for p in v.node.parents):
            useful.add(id(v))
            reach.add(id(v))
    return useful


def backward(outputs, gradients=None, retain_graph: bool | None = None, create_graph: bool = False):
    """Accumulate gradients of ``outputs`` (contracted with ``gradients``) into leaves' ``.grad``.

    ``retain_graph`` defaults to ``create_graph``: without it the graph is released and a second
    backward through it raises. Leaves that are ``Parameter``s also fill their torch ``.grad``.
    """
    found = _run(outputs, gradients, None, create_graph, retain_graph)
    for v, g in found.values():
        v.accumulate_grad(g)


def grad(outputs, inputs, grad_outputs=None, create_graph: bool = False, retain_graph: bool | None = None,
         allow_unused: bool = False):
    """Gradients of ``outputs`` with respect to ``inputs`` (Variables), as a tuple of Variables.

    Nothing is accumulated into ``.grad``. With ``create_graph=True`` the results are recorded and
    can be differentiated again. An input the outputs do not depend on raises, unless
    ``allow_unused=True`` (then its gradient is ``None``).
    """
    single_out = isinstance(outputs, Variable)
    outputs = [outputs] if single_out else list(outputs)
    if grad_outputs is not None and (single_out or not isinstance(grad_outputs, (list, tuple))):
        grad_outputs = [grad_outputs]
    single_in = isinstance(inputs, Variable)
    inputs = [inputs] if single_in else list(inputs)
    for i, x in enumerate(inputs):
        if not isinstance(x, Variable) or not x.requires_grad:
            raise ValueError(f"input {i} must be a Variable that requires grad, got {x!r}")
    found = _run(outputs, grad_outputs, inputs, create_graph, retain_graph)
    result = []
    for i, x in enumerate(inputs):
        g = found.get(id(x), (None, None))[1]
        if g is None and not allow_unused:
            raise RuntimeError(f"input {i} was not used to compute the outputs; pass allow_unused=True "
                               "to get None for it")
        result.append(g)
    return tuple(result)
