"""The op set: one class per op, registered by name (see ``ops.base.Op`` for the contract).

Importing this package registers every op family and installs Node's operator overloads.
"""

from graphc import ir as _ir
from ops import activation, arith, conv, fn, indexing, linalg, loss, norm, pool, random, reduce, shape  # noqa: F401
from ops.base import ErrorCase, Op, OpError, Sample
from ops.registry import REGISTRY, apply, get_op, register

_ir.set_tensor_api(fn)

__all__ = ["REGISTRY", "ErrorCase", "Op", "OpError", "Sample", "apply", "fn", "get_op", "register"]
