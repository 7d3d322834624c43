"""Plan → LLVM IR → native code.

- ``target``: host CPU and features, TargetMachine, O3 (new pass manager), MCJIT and the object-code cache;
- ``module``: the Plan's module (one function per kernel, the entry ``graphc_main(i8** buffers)``, the binding
  table) and its cache key; ``lowering``: the lowerer registry and ``KernelContext``; ``lowerers``: imports
  every op family's lowerings;
- helpers: ``llvm`` (IR types, the loop builder, intrinsics), ``loops`` (strided loop nests), ``scalar`` (the LLVM
  scalar builder elementwise ops write their formulas against), ``mathlib`` (vectorizable exp/log/tanh/sigmoid);
- lowerings named after the op families: ``elementwise`` (+ ``epilogue``), ``activation``, ``reduce``,
  ``linalg`` (on ``gemm/``: config, micro-kernel, packing, driver), ``conv``, ``pool``, ``norm``, ``loss``,
  ``shape``, ``indexing``, ``random``.

codegen imports the IR, the op classes and only the Plan type from ``passes``.
"""
