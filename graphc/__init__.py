"""graphc: a symbolic computational-graph compiler for deep learning.

    import graphc as gc
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple"), g.input("num"), g.input("tax")
    price = apple * num * tax
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    prog = gc.compile({"price": price, "d_apple": d_apple}, backend="numpy")
    prog(apple=100.0, num=2.0, tax=1.1)
"""

from graphc.api import compile, grad  # noqa: E402  (after the op set is registered)
from graphc.ir import (
    FeedError,
    GradientError,
    Graph,
    GraphcError,
    Node,
    ShapeError,
    Tensor,
    TensorType,
)
from ops.fn import (  # the op builders
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

__version__ = "0.1.0"

__all__ = [
    "FeedError", "Graph", "GraphcError", "GradientError", "Node", "ShapeError", "Tensor", "TensorType",
    "abs", "add", "broadcast_to", "cast", "compile", "div", "equal", "exp", "grad", "greater", "leaky_relu",
    "log", "log_softmax", "matmul", "max", "maximum", "mean", "minimum", "mse", "mul", "neg", "one_hot", "pow",
    "relu", "reshape", "sigmoid", "sign", "softmax", "softmax_cross_entropy", "sqrt", "sub", "sum", "tanh",
    "data", "init", "nn", "optim", "testing", "transpose", "verify", "where",
]

from graphc import testing, viz  # noqa: E402
from graphc.viz import render  # noqa: E402

__all__ += ["render", "viz"]
__all__ += ["avg_pool2d", "conv2d", "global_avg_pool2d", "max_pool2d"]
from graphc import data, init, nn, onnx, optim  # noqa: E402  (graphc.onnx loads the onnx package lazily)

__all__ += ["onnx"]

__all__ += ["batch_norm", "binary_cross_entropy", "clip", "concat", "dropout", "elu", "flatten", "gelu", "l1", "l2",
            "mae", "pad", "prelu", "regularizers", "sigmoid_binary_cross_entropy", "softplus"]
from graphc import regularizers  # noqa: E402
from graphc.regularizers import l1, l2  # noqa: E402
