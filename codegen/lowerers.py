"""Every op family's lowerings, registered in ``codegen.lowering.LOWERERS`` by importing their modules here.

One module per op family (the families of ``ops``): ``elementwise`` (every fused elementwise/broadcast group, from
the ops' ``scalar`` formulas; ``epilogue`` applies such a chain inside an anchor kernel), ``activation``
(softmax, log_softmax), ``reduce``, ``linalg`` (matmul, on ``codegen.gemm``), ``conv``, ``pool``, ``norm``
(batch_norm, layer_norm), ``loss`` (the losses and one_hot), ``shape`` (reshape, transpose), ``indexing`` (slice,
concat, pad), ``random`` (dropout), ``collective`` (allreduce, a call into MPI). Adding a family means adding its
import here.
"""

import codegen.activation
import codegen.collective
import codegen.conv
import codegen.conv_backward
import codegen.elementwise
import codegen.indexing
import codegen.linalg
import codegen.loss
import codegen.norm
import codegen.pool
import codegen.random
import codegen.reduce
import codegen.shape  # noqa: F401  (each module registers its lowerers on import)
from codegen.lowering import LOWERERS

__all__ = ["LOWERERS"]
