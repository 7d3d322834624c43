"""The op set: one class per op, registered by name (see ``ops.base.Op`` for the contract).

Importing this package registers every op family and installs Node's operator overloads.
"""

from graphc import ir as _ir
from ops import activation, arith, fn, linalg, loss, reduce, shape  # noqa: F401  (registration)
from ops.base import ErrorCase, Op, OpError, Sample
from ops.registry import REGISTRY, apply, get_op, register

_ir.set_tensor_api(fn)

__all__ = ["REGISTRY", "ErrorCase", "Op", "OpError", "Sample", "apply", "fn", "get_op", "register"]
