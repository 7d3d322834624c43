"""The op set: one class per op, registered by name (see ``ops.base.Op`` for the contract and its facets).

Importing this package registers every op family and installs Node's operator overloads (``x + y`` builds an
``add`` node through ``ops.fn.add``). Families: ``arith``, ``activation``, ``reduce``, ``linalg``, ``conv``,
``pool``, ``norm``, ``loss``, ``mod``, ``shape``, ``indexing``, ``random``; builders (``gc.add``, ``gc.conv2d``, ...) in
``ops.fn``; the scalar-formula interface elementwise ops are written against in ``ops.scalar``.
"""

import graphc.ir as _ir
import ops.activation
import ops.arith
import ops.collective
import ops.conv
import ops.fn
import ops.indexing
import ops.linalg
import ops.loss
import ops.mod
import ops.norm
import ops.pool
import ops.random
import ops.reduce
import ops.shape
import ops.special  # noqa: F401  (each family registers its ops on import)
from ops.base import ErrorCase, Op, OpError, Sample
from ops.registry import REGISTRY, apply, get_op, register

_ir.set_tensor_api(ops.fn)

__all__ = ["REGISTRY", "ErrorCase", "Op", "OpError", "Sample", "apply", "get_op", "register"]
