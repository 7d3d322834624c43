"""Parallel loops inside one native call, on the OpenMP runtime (libgomp's ``GOMP_parallel``).

A *region* runs ``body(chunk)`` for ``chunk in range(chunks)`` on ``threads`` threads::

    kernel:  env = [captured values as i64]; counter = 0
             GOMP_parallel(worker, &{env, &counter, chunks, scratch, per_thread, status}, threads, 0)
    worker:  tid = omp_get_thread_num(); mine = scratch + tid·per_thread
             while (c = atomic counter++) < chunks: body(c, env, mine, status)

Chunks are handed out by an atomic counter, so a thread that finishes early takes the next one. Every chunk must
write its own outputs only; then which thread runs a chunk never changes a result, and a kernel whose chunking does
not depend on the thread count (all of graphc's) gives bitwise the same answer for every thread count. Each thread
gets its own slice of the kernel's scratch memory (``per_thread`` bytes, 64-byte aligned). The runtime is reached
through two symbols the JIT resolves (:data:`PARALLEL`, :data:`THREAD`, registered by ``runtime.parallel``); a
program compiled for one thread calls the chunk functions in a plain loop and never mentions them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import llvmlite.ir as ir

from codegen.llvm import I8, I8P, I32, I64, VOID, for_range, i64

PARALLEL = "graphc_rt_parallel"  # void GOMP_parallel(void (*fn)(void*), void *data, unsigned threads, unsigned flags)
THREAD = "graphc_rt_thread"  # int omp_get_thread_num(void)
ALIGN = 64

Claim = Callable[[int], ir.Value]  # n bytes of scratch -> an i8* to them (64-byte aligned)
# body(builder, chunk, the captured values as rebuilt where the body runs, claim): emits one chunk's work
Body = Callable[[ir.IRBuilder, ir.Value, list[ir.Value], Claim], None]


def _runtime(module: ir.Module) -> tuple[ir.Function, ir.Function]:
    worker_ty = ir.FunctionType(VOID, [I8P]).as_pointer()
    parallel = module.globals.get(PARALLEL) or ir.Function(
        module, ir.FunctionType(VOID, [worker_ty, I8P, I32, I32]), PARALLEL)
    thread = module.globals.get(THREAD) or ir.Function(module, ir.FunctionType(I32, []), THREAD)
    return parallel, thread


def _to_i64(b: ir.IRBuilder, value: ir.Value) -> ir.Value:
    if isinstance(value.type, ir.PointerType):
        return b.ptrtoint(value, I64)
    if value.type == I64:
        return value
    return b.zext(value, I64)


def _from_i64(b: ir.IRBuilder, raw: ir.Value, like: ir.Value) -> ir.Value:
    if isinstance(like.type, ir.PointerType):
        return b.inttoptr(raw, like.type)
    if like.type == I64:
        return raw
    return b.trunc(raw, like.type)


_DATA = ir.LiteralStructType([I64.as_pointer(), I64.as_pointer(), I64, I8P, I64])  # env, next, chunks, scratch, slice


def region(module: ir.Module, b: ir.IRBuilder, name: str, chunks: int, threads: int, captured: Sequence[ir.Value],
           body: Body, claim: Claim) -> None:
    """Emit, at ``b``, the loop ``for chunk in range(chunks): body(...)``: the body in a function of its own (never
    inlined, so every thread count runs the same machine code for a chunk — LLVM may reassociate fast-math sums
    differently in different surroundings), called in a plain loop for one thread, else from a parallel region on
    ``threads`` threads (at most ``chunks``); a single chunk is emitted in place.

    ``captured`` are the values of the enclosing function the body uses (pointers, integers); the body receives
    them rebuilt inside its own function. ``claim(n)`` gives scratch memory of the enclosing function; the body's
    own claims come from its thread's slice of it."""
    if chunks <= 0:
        return
    if chunks == 1:
        body(b, i64(0), list(captured), claim)
        return
    body_fn = ir.Function(module, ir.FunctionType(VOID, [I64, I64.as_pointer(), I8P]), f"{name}.body")
    body_fn.linkage = "internal"
    body_fn.attributes.add("nounwind")
    body_fn.attributes.add("noinline")  # the same machine code runs every chunk, whatever the thread count
    bb = ir.IRBuilder(body_fn.append_basic_block("entry"))
    chunk, env, mine = body_fn.args
    rebuilt = [_from_i64(bb, bb.load(bb.gep(env, [i64(j)])), v) for j, v in enumerate(captured)]
    used = [0]

    def thread_claim(nbytes: int) -> ir.Value:
        offset = used[0]
        used[0] = offset + -(-max(nbytes, 1) // ALIGN) * ALIGN
        return bb.gep(mine, [i64(offset)], source_etype=I8)

    body(bb, chunk, rebuilt, thread_claim)
    bb.ret_void()
    with b.goto_entry_block():  # a few words of stack, once per function even when the region sits in a loop
        env_arr = b.alloca(I64, size=i64(max(len(captured), 1)), name=f"{name}.env")
    for j, v in enumerate(captured):
        b.store(_to_i64(b, v), b.gep(env_arr, [i64(j)]))
    threads = max(1, min(threads, chunks))
    base = claim(used[0] * threads) if used[0] else ir.Constant(I8P, None)
    if threads == 1:
        with for_range(b, 0, chunks, name=f"{name}.c") as c:
            b.call(body_fn, [c, env_arr, base])
        return
    parallel, thread = _runtime(module)
    with b.goto_entry_block():
        counter = b.alloca(I64, name=f"{name}.next")
        data = b.alloca(_DATA, name=f"{name}.data")
    b.store(i64(0), counter)
    for j, v in enumerate((env_arr, counter, i64(chunks), base, i64(used[0]))):
        b.store(v, b.gep(data, [ir.Constant(I32, 0), ir.Constant(I32, j)]))
    worker = _worker(module, name, body_fn, thread)
    b.call(parallel, [worker, b.bitcast(data, I8P), ir.Constant(I32, threads), ir.Constant(I32, 0)])


def _worker(module: ir.Module, name: str, body_fn: ir.Function, thread: ir.Function) -> ir.Function:
    """void name.worker(i8* data): take chunks off the shared counter until none is left."""
    fn = ir.Function(module, ir.FunctionType(VOID, [I8P]), f"{name}.worker")
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    data = b.bitcast(fn.args[0], _DATA.as_pointer())

    def field(j: int) -> ir.Value:
        return b.load(b.gep(data, [ir.Constant(I32, 0), ir.Constant(I32, j)]))

    env, counter, chunks, base, per_thread = (field(j) for j in range(5))
    tid = b.zext(b.call(thread, []), I64)
    mine = b.gep(base, [b.mul(tid, per_thread)], source_etype=I8)
    loop, done = fn.append_basic_block("take"), fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    chunk = b.atomic_rmw("add", counter, i64(1), "monotonic")
    work = fn.append_basic_block("work")
    b.cbranch(b.icmp_signed("<", chunk, chunks), work, done)
    b.position_at_end(work)
    b.call(body_fn, [chunk, env, mine])
    b.branch(loop)
    b.position_at_end(done)
    b.ret_void()
    return fn
