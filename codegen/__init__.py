"""Lowering of Plan kernels to LLVM IR, the target machine, JIT and object cache."""
