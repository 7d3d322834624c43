"""Hostile ONNX files: random byte mutations and crafted shape/index values of small valid models are imported,
compiled and run (numpy and llvm) in a subprocess; every failure must be a GraphcError, and a crash (a signal)
fails the test instead of killing the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("onnx")

SCRIPT = """
    import random, sys
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import graphc as gc

    def model(nodes, inputs, outputs, inits=(), opset=13):
        graph = helper.make_graph(nodes, "fuzz", inputs, outputs, initializer=list(inits))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    def vi(name, elem, shape):
        return helper.make_tensor_value_info(name, elem, shape)

    F, I = TensorProto.FLOAT, TensorProto.INT64
    seeds = [
        model([helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Gather", ["r", "i"], ["y"], axis=1)],
              [vi("x", F, [1]), vi("i", I, [2])], [vi("y", F, None)],
              [numpy_helper.from_array(np.array([7, 0x6DB6DB6DB6DB6DB7], np.int64), "s")]),
        model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[1, 1])],
              [vi("x", F, [1, 2, 6, 6])], [vi("y", F, [1, 3, 6, 6])],
              [numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "w")]),
        model([helper.make_node("Gather", ["x", "i"], ["g"], axis=0), helper.make_node("Relu", ["g"], ["y"])],
              [vi("x", F, [5, 3]), vi("i", I, [4])], [vi("y", F, [4, 3])]),
        model([helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
               helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"])],
              [vi("x", F, [2, 1, 4, 4])], [vi("y", F, [2, 3])],
              [numpy_helper.from_array(np.ones((4, 3), np.float32), "w")]),
    ]
    rng = random.Random(int(sys.argv[1]))
    outcomes = {"ran": 0, "refused": 0}
    for case in range(int(sys.argv[2])):
        data = bytearray(seeds[case % len(seeds)].SerializeToString())
        if case >= len(seeds):  # the seeds themselves first, then mutants
            for _ in range(rng.randint(1, 6)):
                at = rng.randrange(len(data))
                data[at] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        try:
            imported = gc.onnx.import_model(bytes(data))
            for backend in ("numpy", "llvm"):
                prog = imported.compile(backend=backend)
                feeds = {}
                for name in imported.inputs:
                    node = imported.graph.inputs[name]
                    if node.dtype == "int64":
                        feeds[name] = np.array([rng.randint(-9, 9) for _ in range(node.size)], np.int64).reshape(
                            node.shape)
                    else:
                        feeds[name] = np.ones(node.shape, node.dtype)
                prog(**feeds)
            outcomes["ran"] += 1
        except gc.GraphcError:
            outcomes["refused"] += 1
    print(outcomes["ran"], outcomes["refused"])
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_onnx_models_never_crash(seed):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "GRAPHC_CACHE": "0"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), str(seed), "60"], capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    ran, refused = map(int, out.stdout.split())
    assert ran + refused == 60 and ran >= 1 and refused >= 1  # the crafted wrapping reshape is refused
