"""``prog.explain(tensor)``: a forward node, a gradient node, a fused node and nodes simplified away, on an MLP
training step (llvm), and the numpy backends; the provenance the passes record and the IR tags behind it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc.ir import GraphcError
from passes import autodiff
from passes.plan import intervals


def _mlp():
    g = gc.Graph("mlp")
    x, y = g.input("x", (8, 16)), g.input("y", (8,), "int64")
    w1 = g.param("w1", gc.init.he_normal((16, 32), 0))
    b1 = g.param("b1", gc.init.zeros((32,)))
    w2 = g.param("w2", gc.init.glorot_uniform((32, 4), 1))
    h = gc.relu(x @ w1 + b1, name="hidden")  # the line the report names
    scaled = gc.mul(h, 1.0, name="scaled")   # simplified away: x*1 → x
    loss = gc.softmax_cross_entropy(scaled @ w2, y, name="loss")
    updates = gc.optim.SGD(0.1, momentum=0.9).minimize(loss)
    return {"loss": loss}, updates, h, scaled


@pytest.fixture(scope="module")
def mlp():
    outputs, updates, h, scaled = _mlp()
    program = gc.compile(outputs, updates=updates, threads=1)
    return program, h, scaled


def test_forward_node_from_site_to_assembly(mlp):
    program, h, _ = mlp
    ex = program.explain(h)
    text = str(ex)
    assert repr(ex) == text and [t for t, _ in ex.sections] == ["tensor", "passes", "buffer", "LLVM", "assembly"]
    assert "hidden: relu float32[8, 32]" in text and f"created at {h.site}" in text and "test_explain.py:" in h.site
    plan = program.plan
    p = plan.node_map[h]
    assert ex.computed_by is p and not ex.simplified_away
    assert ex.kernel is next(k for k in plan.kernels if p in k.nodes)
    assert ex.buffer == plan.buffers[p] and ex.materialized
    assert f"arena offset {ex.buffer.offset}, {ex.buffer.nbytes} bytes" in text
    keep = set(plan.outputs) | {v for _, v in plan.updates}
    assert ex.interval == intervals(plan.kernels, keep)[p]
    assert ex.function == program.module.kernel_functions[ex.kernel.name]
    # relu's formula (compare and select) and its store, found through the !graphc.node tags of the emitted IR
    assert ex.ir_lines and all("!graphc.node" in line for line in ex.ir_lines)
    assert any("fcmp" in line for line in ex.ir_lines) and any(line.startswith("store") for line in ex.ir_lines)
    assert f"{ex.function}:" in ex.asm and ex.vector_width is not None
    assert re.search(r"vector width: (512|256|128)-bit vectors|vector width: scalar", text)
    assert ex.section("assembly") and "host assembly after O3" in "\n".join(ex.section("assembly"))


def test_gradient_node_names_its_forward_node_and_vjp(mlp):
    program, h, _ = mlp
    mask = next(n for n in program.nodes if n.op == "where" and n.backward)  # relu's VJP: where(h > 0, g, 0)
    ex = program.explain(mask.name)
    assert ex.node is mask and ex.gradient is not None
    assert ex.gradient.forward is h and ex.gradient.vjp == "Relu.vjp" and ex.gradient.input == 0
    text = str(ex)
    assert "gradient" in [t for t, _ in ex.sections]
    assert "built by the VJP of relu (Relu.vjp) for forward node 'hidden'" in text
    assert f"input 0 of 'hidden': '{h.inputs[0].name}'" in text


def test_autodiff_records_every_node_it_builds():
    g = gc.Graph("g")
    x = g.input("x", (3,))
    w = g.param("w", np.ones((3,), np.float32))
    y = x * w
    loss = (y * y).sum()
    (dw,) = gc.grad(loss, [w])
    origin = autodiff.origin(dw)
    assert origin.role == "vjp" and origin.forward is y and origin.vjp == "Mul.vjp" and origin.input == 1
    built = [n for n in g.nodes if n.backward]
    assert built and all(autodiff.origin(n) is not None for n in built)
    assert autodiff.origin(y) is None
    seeds = [n for n in built if autodiff.origin(n).role == "seed"]
    assert len(seeds) == 1 and seeds[0].op == "const" and autodiff.origin(seeds[0]).forward is loss
    # y is read twice by y * y: its gradient is the sum of two contributions
    assert any(autodiff.origin(n).role == "sum" and autodiff.origin(n).forward is y for n in built)


def test_fused_node_names_its_kernel_and_why_it_ends_there(mlp):
    program, _, _ = mlp
    plan = program.plan
    kernel = next(k for k in plan.kernels if k.anchor is None and len(k.nodes) > 1)
    inner = next(n for n in kernel.nodes if n not in plan.buffers)  # a member no other kernel reads
    user = next(u for u, p in plan.node_map.items() if p is inner)
    ex = program.explain(user)
    text = str(ex)
    assert ex.kernel is kernel and f"fused with {len(kernel.nodes) - 1} other node(s) into kernel {kernel.name}" in text
    assert not ex.materialized and f"not materialized: lives in registers inside kernel {kernel.name}" in text
    notes = plan.provenance.kernels[kernel.name]
    assert any(f"-> {kernel.name} via" in line or f"boundary {kernel.name} ->" in line for line in notes)
    report = [line.strip() for line in plan.report["fusion"]]
    assert all(line in report for line in notes)  # the fusion report's own reasons
    assert "why the kernel ends where it does" in text and all(line in text for line in notes[:12])
    assert ex.ir_lines and all("!graphc.node" in line for line in ex.ir_lines)


def test_node_simplified_away(mlp):
    program, h, scaled = mlp
    ex = program.explain("scaled")
    assert ex.node is scaled and ex.simplified_away and ex.computed_by is program.plan.node_map[h]
    assert [e.what for e in ex.events if e.stage == "simplify"] == ["mul_one"]
    text = str(ex)
    assert "simplified by rule mul_one: mul(hidden, 1.0) → hidden" in text
    assert "its value is now computed by 'hidden'" in text
    assert ex.kernel is program.explain(h).kernel  # the same kernel and buffer as the value it became


def test_constant_fold_and_cse_are_recorded():
    g = gc.Graph("g")
    x = g.input("x", (4,))
    c = gc.div(g.const(1.0), g.const(4.0), name="quarter")
    a = gc.mul(x, 2.0, name="a")
    b = gc.mul(x, 2.0, name="b")
    program = gc.compile({"y": (a + b) * c}, threads=1)
    folded = str(program.explain("quarter"))
    assert "constant-folded: div(1.0, 4.0) = 0.25" in folded
    assert "the constant's own array" in folded
    ex = program.explain("b")
    assert [e.what for e in ex.events] == ["cse"] and ex.events[0].into.name == "a"
    assert "CSE: mul(x, 2.0) is already computed as 'a'" in str(ex) and ex.computed_by.name == "a"


def test_in_place_reuse_is_recorded(mlp):
    program, _, _ = mlp
    plan = program.plan
    assert plan.inplace, "the SGD update chain reuses buffers in place"
    v, x = next(iter(plan.inplace.items()))
    assert any(e.what == "inplace" and e.into is x for e in plan.provenance.events.get(v, []))
    assert any(e.what == "donor" and e.into is v for e in plan.provenance.events.get(x, []))
    user = next(u for u, p in plan.node_map.items() if p is v)
    assert f"in place: overwrites the buffer of {x.name!r}" in str(program.explain(user))
    assert program.provenance is plan.provenance


@pytest.mark.parametrize("backend", ["numpy", "numpy-plan"])
def test_numpy_backends_have_no_llvm(backend):
    outputs, updates, h, _ = _mlp()
    program = gc.compile(outputs, updates=updates, backend=backend)
    ex = program.explain(h)
    text = str(ex)
    assert f"none: the {backend} backend runs NumPy references, so there is no LLVM IR and no assembly" in text
    assert ex.ir_lines == [] and ex.asm == "" and ex.function is None
    assert ex.buffer is not None and "arena offset" in text and "fuse: " in text
    assert ("the numpy backend interprets the graph node by node" in text) == (backend == "numpy")
    assert (program.provenance is None) == (backend == "numpy")


def test_unknown_or_foreign_nodes_are_errors(mlp):
    program, _, _ = mlp
    with pytest.raises(GraphcError, match="no node named 'hiden'.*did you mean 'hidden'"):
        program.explain("hiden")
    other = gc.Graph("other").input("z", (2,))
    with pytest.raises(GraphcError, match="'z'.*is not computed by this program"):
        program.explain(other)


def test_ir_tags_do_not_change_the_machine_code(mlp):
    from codegen.target import _optimize, _parse, new_target_machine

    program, _, _ = mlp
    tagged = program.module.ir_text
    assert "!graphc.node" in tagged
    plain = re.sub(r"^!\d+ = !\{ i32 -?\d+, !\"[^\"]*\" \}\n", "", re.sub(r",? ?!graphc\.node !\d+", "", tagged),
                   flags=re.M)
    assert "graphc.node" not in plain

    def asm(text: str) -> str:
        module = _parse(text)
        _optimize(module, new_target_machine())
        return new_target_machine().emit_assembly(module)

    assert asm(tagged) == asm(plain)
