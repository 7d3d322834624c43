"""GEMM in LLVM IR (GotoBLAS/BLIS-style, one thread): ``config`` (tile geometry from the host's vectors),
``microkernel`` (the register tile), ``pack`` (operand packing), ``driver`` (``emit_gemm``: the blocked loops,
edge tiles, transposed and batched forms). ``codegen.linalg`` lowers ``matmul`` with it, ``codegen.conv`` the
convolutions."""
