"""Cold-compile cost stays proportional to the code: long constant-trip loops are not unrolled into straight-line
code (``codegen.llvm.for_range``), and the parts a module is split into are balanced, shared GEMM and packing
helpers included (``codegen.split``)."""

from __future__ import annotations

import re

import llvmlite.binding as llvm
import llvmlite.ir as ir

from codegen import target
from codegen.gemm.driver import emit_gemm
from codegen.llvm import F32, FULL_UNROLL_MAX_TRIPS, for_range, i64
from codegen.split import _blocks, split_module
from tests.codegen.test_split_compile import _cnn_step


def _bias_relu_module(channels: int, pixels: int) -> str:
    """y[c, p] = max(y[c, p] + 1, 0) over a channels × pixels block: the shape of a conv's separate epilogue."""
    module = target.new_module("nest")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [F32.as_pointer()]), "nest")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    with for_range(b, 0, channels, name="ch") as ch:
        with for_range(b, 0, pixels, name="e") as e:
            at = b.gep(fn.args[0], [b.add(b.mul(ch, i64(pixels)), e)], inbounds=True)
            v = b.fadd(b.load(at), ir.Constant(F32, 1.0))
            b.store(b.select(b.fcmp_ordered(">", v, ir.Constant(F32, 0.0)), v, ir.Constant(F32, 0.0)), at)
    b.ret_void()
    return str(module)


def test_only_long_constant_loops_carry_unroll_disable():
    text = _bias_relu_module(16, 784)
    loops = re.findall(r"^(\w+)\.end:", text, re.M)
    assert set(loops) == {"ch", "e"}
    latch_lines = [line for line in text.splitlines() if line.strip().startswith("br i1")]
    assert len(latch_lines) == 2
    (inner,) = [line for line in latch_lines if '%"e.body"' in line]
    (outer,) = [line for line in latch_lines if '%"ch.body"' in line]
    assert "!llvm.loop" in inner and "!llvm.loop" not in outer
    loop_id = inner.rsplit("!", 1)[1]
    assert re.search(rf"^!{loop_id} = !{{ !{loop_id}, !(\d+) }}", text, re.M)  # self-referential loop ID
    assert '!"llvm.loop.unroll.disable"' in text
    assert "!llvm.loop" not in _bias_relu_module(16, FULL_UNROLL_MAX_TRIPS)


def test_a_long_constant_loop_stays_a_vectorized_loop_after_o3():
    module = target._parse(_bias_relu_module(16, 784))
    target._optimize(module, target.new_target_machine())
    optimized = str(module.get_function("nest"))
    stores = len(re.findall(r"store <\d+ x float>", optimized))
    assert 0 < stores <= 16, stores  # vectorized (and interleaved), not 16 × 49 straight-line vector stores


def test_shared_helpers_are_balanced_over_the_parts():
    _, prog, _ = _cnn_step(threads=1)
    text = prog.jit.llvm_ir
    _, blocks = _blocks(text)
    helpers = [name for name, block in blocks
               if name.strip('"').startswith("graphc.") and " noinline " in block.split("\n", 1)[0] + " "]
    assert len(helpers) >= 4  # packers and micro-kernels of the conv and matmul GEMMs
    for parts in (2, 3):
        texts = split_module(text, parts)
        sizes = [sum(len(block) for name, block in _blocks(part)[1]
                     if not block.startswith("define internal")) for part in texts]
        placed = [name for part in texts for name, block in _blocks(part)[1] if name in helpers]
        assert sorted(placed) == sorted(helpers)  # each helper defined once
        assert any(name in helpers for name, _ in _blocks(texts[-1])[1]) or parts > len(helpers)
        largest_group = max(len(block) for _, block in blocks)
        # greedy largest-first placement: no part exceeds the mean by more than one group's size
        assert max(sizes) <= sum(sizes) / len(sizes) + largest_group * 2, sizes


def test_every_part_of_a_module_of_bare_gemms_parses():
    """Functions outside kernels keep their outlined bodies, and a copied worker's callees are declared."""
    module = target.new_module("bare_gemms")
    for i in range(6):
        emit_gemm(module, f"g{i}_t3", 64 + i, 96, 200, threads=3)
    text = str(module)
    for parts in (2, 3, 7):
        texts = split_module(text, parts)
        for part in texts:
            target._parse(part, context=llvm.create_context())  # raises on an undefined function
        owners = {name.strip('"'): i for i, part in enumerate(texts) for name, block in _blocks(part)[1]
                  if not block.startswith("define internal") or " noinline " in block.split("\n", 1)[0]}
        outlined = [name for name in owners if name.split(".", 1)[0] in owners and "." in name]
        assert len(outlined) >= 6  # each GEMM's parallel chunk body
        for name in outlined:
            assert owners[name.split(".", 1)[0]] == owners[name], name
