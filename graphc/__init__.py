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
    broadcast_to,
    cast,
    div,
    equal,
    exp,
    greater,
    leaky_relu,
    log,
    log_softmax,
    matmul,
    max,
    maximum,
    mean,
    minimum,
    mse,
    mul,
    neg,
    one_hot,
    pow,
    relu,
    reshape,
    sigmoid,
    sign,
    softmax,
    softmax_cross_entropy,
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
    "testing", "transpose", "verify", "where",
]

from graphc import testing  # noqa: E402
