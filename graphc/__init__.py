"""graphc: a symbolic computational-graph compiler for deep learning.

    import graphc as gc
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple"), g.input("num"), g.input("tax")
    price = apple * num * tax
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    prog = gc.compile({"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax})
    prog(apple=100.0, num=2.0, tax=1.1)   # price 220, d_apple 2.2, d_num 110, d_tax 200

Modules: ``gc.nn`` (Keras-like layers and training), ``gc.optim``, ``gc.init``, ``gc.data``, ``gc.testing``,
``gc.viz`` (``gc.render``), ``gc.onnx`` (ONNX import), ``gc.regularizers`` (``gc.l1``, ``gc.l2``).
"""

from graphc.api import compile, grad
from graphc.ir import FeedError, GradientError, Graph, GraphcError, Node, ShapeError, Tensor, TensorType
from ops.fn import (  # the op builders, one per registered op family member
    abs,
    add,
    avg_pool2d,
    batch_norm,
    binary_cross_entropy,
    broadcast_to,
    cast,
    clip,
    concat,
    conv2d,
    div,
    dropout,
    elu,
    equal,
    exp,
    flatten,
    gelu,
    global_avg_pool2d,
    greater,
    leaky_relu,
    log,
    log_softmax,
    mae,
    matmul,
    max,
    max_pool2d,
    maximum,
    mean,
    minimum,
    mse,
    mul,
    neg,
    one_hot,
    pad,
    pow,
    prelu,
    relu,
    reshape,
    sigmoid,
    sigmoid_binary_cross_entropy,
    sign,
    softmax,
    softmax_cross_entropy,
    softplus,
    sqrt,
    sub,
    sum,
    tanh,
    transpose,
    where,
)
from passes.verify import verify

from graphc import data, init, nn, onnx, optim, regularizers, testing, viz  # isort: skip  (need the names above)
from graphc.regularizers import l1, l2  # isort: skip
from graphc.viz import render  # isort: skip

__version__ = "0.1.0"

__all__ = [
    # IR and errors
    "FeedError", "GradientError", "Graph", "GraphcError", "Node", "ShapeError", "Tensor", "TensorType",
    # compile, differentiate, check, draw
    "compile", "grad", "render", "verify",
    # op builders
    "abs", "add", "avg_pool2d", "batch_norm", "binary_cross_entropy", "broadcast_to", "cast", "clip", "concat",
    "conv2d", "div", "dropout", "elu", "equal", "exp", "flatten", "gelu", "global_avg_pool2d", "greater",
    "leaky_relu", "log", "log_softmax", "mae", "matmul", "max", "max_pool2d", "maximum", "mean", "minimum", "mse",
    "mul", "neg", "one_hot", "pad", "pow", "prelu", "relu", "reshape", "sigmoid", "sigmoid_binary_cross_entropy",
    "sign", "softmax", "softmax_cross_entropy", "softplus", "sqrt", "sub", "sum", "tanh", "transpose", "where",
    # regularization
    "l1", "l2",
    # modules
    "data", "init", "nn", "onnx", "optim", "regularizers", "testing", "viz",
]
