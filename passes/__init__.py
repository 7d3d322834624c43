"""Graph passes, one per file.

- ``autodiff``: reverse-mode gradients as graph nodes (run by ``gc.grad`` when the graph is built);
- the compile pipeline (``pipeline.PIPELINE``, in order): ``simplify``, ``decompose``, ``fuse``, ``schedule``,
  ``memplan``; each module defines its pass object ``PASS`` (name, description, ``run(c) -> c`` over a
  ``compilation.Compilation``) and keeps a functional ``run(...)`` its tests call directly;
- ``plan``: the Plan both backends execute (kernels, buffers, bindings) and ``verify_plan``, its invariants;
- ``verify``: well-formedness of a graph (``GRAPHC_DEBUG=1`` runs it after every pass).

Passes read what they must know about an op from its class (``ops.base.Op`` facets), never from op names.
"""
