"""Normalization: batch_norm (one op for training and inference, so fusion can recognise and fold it) and
layer_norm (statistics per row over the trailing axes, one kernel on the llvm backend).

batch_norm's conventions (PyTorch's): statistics per channel (axis 1) over every other axis (N for (N, C), N, H, W
for NCHW); the batch variance that normalizes is the biased one (divide by n), the running variance is updated with the
unbiased one (divide by n - 1); ``momentum`` weighs the new batch statistic:
``running ← (1 - momentum)·running + momentum·batch``.
"""

from __future__ import annotations

import numpy as np

import ops.fn as fn
from graphc.ir import Node
from ops.base import ErrorCase, Op, OpError, Sample, positive, require_float
from ops.registry import register


def _axes(ndim: int) -> tuple[int, ...]:
    """The reduction axes of batch norm: every axis but the channel axis 1."""
    return (0,) + tuple(range(2, ndim))


def _per_channel(v: Node, ndim: int) -> Node:
    """A (C,) vector reshaped to (1, C, 1, ...) so it broadcasts against an (N, C, ...) tensor."""
    return fn.reshape(v, (1, v.shape[0]) + (1,) * (ndim - 2))


@register
class BatchNorm(Op):
    """Batch normalization over all axes but axis 1 (inputs x, γ, β, running mean μᵣ, running variance σᵣ²).

    Training:  μ = mean(x), σ² = mean((x - μ)²) (biased), x̂ = (x - μ)/√(σ² + ε), y = γ·x̂ + β;
      with s = √(σ² + ε) and means over the n reduced elements per channel:
      dx = (γ/s)·(g - mean(g) - x̂·mean(g·x̂)),  dγ = Σ g·x̂,  dβ = Σ g;  no gradient to μᵣ, σᵣ² (unused).
    Inference: x̂ = (x - μᵣ)/√(σᵣ² + ε), y = γ·x̂ + β;  dx = g·γ/s, dγ = Σ g·x̂, dβ = Σ g,
      dμᵣ = -Σ g·γ/s,  dσᵣ² = -½ Σ g·γ·x̂/s²  (s = √(σᵣ² + ε)).
    The running-statistic updates are not part of this op: ``fn.batch_norm`` registers them as implicit
    updates of the graph (see :func:`ops.fn.batch_norm`).
    """

    name = "batch_norm"
    kind = "opaque"
    arity = 5
    cost = 4

    def epilogue_axis(self, node):
        """Training batch norm writes channel by channel (axis 1); inference is decomposed (below) instead."""
        return 1 if node.attrs["training"] else None

    def decomposition(self, node):
        if node.attrs["training"]:
            return None
        return (f"inference batch_norm {node.name} -> (x - running_mean) * gamma / sqrt(running_var + eps) + beta "
                "(elementwise, scale from the current params)")

    def decompose(self, node, inputs, b):
        """Inference: scale = γ/√(σᵣ² + ε) ((C,), recomputed every call from the current params, never folded),
        y = (x − view(μᵣ))·view(scale) + view(β), where view(v) is v for a 2-D x and a unit-axis reshape to
        (C, 1, …) otherwise (read in place by fusion). (x − μ)·s + β rather than x·s + (β − μ·s) keeps the
        interpreter's rounding when |μ| ≫ σ; both are one pass over x."""
        x, gamma, beta, mean, var = inputs
        scale = b.emit("div", gamma, b.emit("sqrt", b.emit("add", var, b.const(node.attrs["eps"], x))))

        def view(v):
            return v if x.ndim == 2 else b.emit("reshape", v, shape=(x.shape[1],) + (1,) * (x.ndim - 2))

        centered = b.emit("sub", x, view(mean))
        return b.result("add", b.emit("mul", centered, view(scale)), view(beta))

    def normalize(self, attrs, *types):
        momentum, eps = float(attrs.get("momentum", 0.1)), float(attrs.get("eps", 1e-5))
        if not 0.0 <= momentum <= 1.0:
            raise OpError(f"momentum must be in [0, 1], got {momentum}")
        if not eps > 0.0:
            raise OpError(f"eps must be positive, got {eps}")
        if "training" not in attrs:
            raise OpError("needs training=True (batch statistics) or training=False (running statistics)")
        return {"training": bool(attrs["training"]), "momentum": momentum, "eps": eps}

    def infer(self, attrs, x, gamma, beta, mean, var):
        require_float(self.name, x)
        if x.ndim < 2:
            raise OpError(f"x must have shape (N, C) or (N, C, ...), got {x.shape}")
        channels = x.shape[1]
        for what, t in (("gamma", gamma), ("beta", beta), ("running_mean", mean), ("running_var", var)):
            if t.shape != (channels,) or t.dtype != x.dtype:
                raise OpError(f"{what} must be a {x.dtype} vector of shape ({channels},) for x of shape {x.shape} "
                              f"(one value per channel, axis 1), got {t}")
        per_channel = x.size // channels if channels else 0
        if attrs["training"] and per_channel < 2:
            raise OpError(f"training needs more than one value per channel to compute batch statistics, "
                          f"x has shape {x.shape}")
        return x

    def reference(self, attrs, x, gamma, beta, mean, var):
        axes = _axes(x.ndim)
        shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        if attrs["training"]:
            mu = x.mean(axis=axes, keepdims=True)
            sigma2 = np.square(x - mu).mean(axis=axes, keepdims=True)
        else:
            mu, sigma2 = mean.reshape(shape), var.reshape(shape)
        xhat = (x - mu) / np.sqrt(sigma2 + attrs["eps"])
        return (xhat * gamma.reshape(shape) + beta.reshape(shape)).astype(x.dtype)

    def vjp(self, node, g):
        x, gamma, beta, mean, var = node.inputs
        axes, eps, nd = _axes(x.ndim), node.attrs["eps"], x.ndim
        gamma_b = _per_channel(gamma, nd)
        d_beta = fn.sum(g, axis=axes)
        if node.attrs["training"]:
            count = float(x.size // x.shape[1])
            centered = fn.sub(x, fn.mean(x, axis=axes, keepdims=True))
            inv_std = fn.div(1.0, fn.sqrt(fn.add(fn.mean(fn.mul(centered, centered), axis=axes, keepdims=True), eps)))
            xhat = fn.mul(centered, inv_std)
            d_gamma = fn.sum(fn.mul(g, xhat), axis=axes)
            mean_g = _per_channel(fn.div(d_beta, count), nd)
            mean_gx = _per_channel(fn.div(d_gamma, count), nd)
            d_x = fn.mul(fn.mul(gamma_b, inv_std), fn.sub(fn.sub(g, mean_g), fn.mul(xhat, mean_gx)))
            return d_x, d_gamma, d_beta, None, None
        inv_std = fn.div(1.0, fn.sqrt(fn.add(var, eps)))
        inv_std_b = _per_channel(inv_std, nd)
        xhat = fn.mul(fn.sub(x, _per_channel(mean, nd)), inv_std_b)
        d_gamma = fn.sum(fn.mul(g, xhat), axis=axes)
        d_x = fn.mul(g, fn.mul(gamma_b, inv_std_b))
        d_mean = fn.neg(fn.sum(d_x, axis=axes))
        d_var = fn.mul(fn.mul(fn.mul(gamma, d_gamma), fn.mul(inv_std, inv_std)), -0.5)
        return d_x, d_gamma, d_beta, d_mean, d_var

    def samples(self, rng):
        def case(shape, training, **attrs):
            c = shape[1]
            arrays = [rng.standard_normal(shape) * 2 + 0.5, positive(rng, c), rng.standard_normal(c),
                      rng.standard_normal(c) * 0.1, positive(rng, c)]
            return Sample(arrays, {"training": training, **attrs})

        return [case((6, 3), True), case((2, 3, 4, 5), True), case((3, 2, 5), True, eps=1e-3),
                case((6, 3), False), case((2, 3, 2, 2), False, momentum=0.3)]

    def error_cases(self):
        vec = ((3,), "float32")
        return [ErrorCase([((4, 3, 2, 2), "float32"), ((4,), "float32"), vec, vec, vec], {"training": True},
                          "gamma must be a float32 vector of shape (3,)"),
                ErrorCase([((4,), "float32"), vec, vec, vec, vec], {"training": True}, "(N, C)"),
                ErrorCase([((1, 3), "float32"), vec, vec, vec, vec], {"training": True}, "more than one value"),
                ErrorCase([((4, 3), "float32"), vec, vec, vec, vec], {}, "needs training="),
                ErrorCase([((4, 3), "float32"), vec, vec, vec, vec], {"training": True, "momentum": 2.0},
                          "momentum must be in [0, 1]")]


# -- layer norm ----------------------------------------------------------------------------------------------


def _normalized_shape(what: str, t, x, axis: int) -> tuple[int, ...]:
    """``t``'s shape without leading size-1 axes beyond the normalized rank; an OpError unless it broadcasts to
    the normalized shape x.shape[axis:]."""
    norm = x.shape[axis:]
    shape = tuple(t.shape)
    while len(shape) > len(norm) and shape[0] == 1:
        shape = shape[1:]
    lead = len(norm) - len(shape)
    if lead < 0 or any(d not in (1, norm[lead + i]) for i, d in enumerate(shape)) or t.dtype != x.dtype:
        raise OpError(f"{what} must be a {x.dtype} tensor broadcastable to the normalized shape {norm} "
                      f"(x {x.shape}, axis {axis}), got {t}")
    return shape


@register
class LayerNorm(Op):
    """Layer normalization over the trailing axes [axis, ndim) of x (inputs x, γ, optional β; ONNX
    LayerNormalization): per row (the leading axes), μ = mean(x), σ² = mean((x − μ)²) (biased),
    r = 1/√(σ² + ε), x̂ = (x − μ)·r, y = x̂·γ + β, γ and β broadcast over the normalized axes.

    VJP, means over the n normalized elements of a row, gγ = g·γ:
      dx = r·(gγ − mean(gγ) − x̂·mean(gγ·x̂)),  dγ = Σ_rows g·x̂,  dβ = Σ_rows g  (summed to γ's and β's shapes).
    The reference computes in float64 and rounds y once to x's dtype; the llvm kernel accumulates the statistics
    in float64 and writes y in x's dtype (within a few float32 ulp of the reference, see codegen.norm).
    """

    name = "layer_norm"
    kind = "opaque"
    arity = None
    cost = 8

    def normalize(self, attrs, x, *rest):
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("eps", 1e-5))
        if not -x.ndim <= axis < x.ndim:
            raise OpError(f"axis {axis} is out of range for x of shape {x.shape}")
        if not eps > 0.0:
            raise OpError(f"eps must be positive, got {eps}")
        return {"axis": axis % x.ndim, "eps": eps}

    def infer(self, attrs, x, *rest):
        require_float(self.name, x)
        if len(rest) not in (1, 2):
            raise OpError(f"takes x, scale and an optional bias, got {1 + len(rest)} operands")
        for what, t in zip(("scale", "bias"), rest):
            _normalized_shape(what, t, x, attrs["axis"])
            if t.ndim > x.ndim:
                raise OpError(f"{what} {t} has more axes than x {x.shape}")
        return x

    def reference(self, attrs, x, scale, bias=None):
        axes = tuple(range(attrs["axis"], x.ndim))
        x64 = x.astype(np.float64)
        centered = x64 - x64.mean(axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(np.square(centered).mean(axis=axes, keepdims=True) + attrs["eps"])
        y = centered * inv * scale.astype(np.float64)
        if bias is not None:
            y = y + bias.astype(np.float64)
        return y.astype(x.dtype)

    def vjp(self, node, g):
        x, scale = node.inputs[0], node.inputs[1]
        axes = tuple(range(node.attrs["axis"], x.ndim))
        centered = fn.sub(x, fn.mean(x, axis=axes, keepdims=True))
        inv = fn.div(1.0, fn.sqrt(fn.add(fn.mean(fn.mul(centered, centered), axis=axes, keepdims=True),
                                         node.attrs["eps"])))
        xhat = fn.mul(centered, inv)
        g_scaled = fn.mul(g, scale)
        d_x = fn.mul(inv, fn.sub(fn.sub(g_scaled, fn.mean(g_scaled, axis=axes, keepdims=True)),
                                 fn.mul(xhat, fn.mean(fn.mul(g_scaled, xhat), axis=axes, keepdims=True))))
        d_scale = fn.sum_to(fn.mul(g, xhat), scale.shape)
        if len(node.inputs) == 2:
            return d_x, d_scale
        return d_x, d_scale, fn.sum_to(g, node.inputs[2].shape)

    def samples(self, rng):
        def case(shape, scale, bias, **attrs):
            arrays = [rng.standard_normal(shape) * 2 + 0.5, positive(rng, *scale)]
            if bias is not None:
                arrays.append(rng.standard_normal(bias))
            return Sample(arrays, attrs)

        return [case((4, 6), (6,), (6,)), case((2, 3, 4), (3, 4), (4,), axis=1), case((3, 5), (5,), None),
                case((2, 3, 4), (4,), (3, 1), axis=-2, eps=1e-3), case((2, 5), (1, 5), (1,), axis=0),
                case((3, 1, 4), (1, 1, 4), (1, 4), axis=1), case((2, 3, 4), (3, 1), (1, 4), axis=1)]

    def error_cases(self):
        x = ((4, 3, 5), "float32")
        return [ErrorCase([x, ((3,), "float32")], {"axis": -1}, "scale must be a float32 tensor broadcastable"),
                ErrorCase([x, ((5,), "float32"), ((2, 5), "float32")], {}, "bias must be a float32 tensor"),
                ErrorCase([x, ((5,), "float64")], {}, "scale must be a float32 tensor"),
                ErrorCase([x, ((5,), "float32")], {"axis": 3}, "axis 3 is out of range"),
                ErrorCase([x, ((5,), "float32")], {"eps": 0.0}, "eps must be positive"),
                ErrorCase([x], {}, "takes x, scale and an optional bias"),
                ErrorCase([((4, 3), "int64"), ((3,), "int64")], {}, "needs floating-point operands")]
