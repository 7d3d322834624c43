"""Rendering: graphviz.Digraph pictures of forward/backward graphs, value annotations, file formats, escaping,
Jupyter display and the missing-`dot` path."""

from __future__ import annotations

import re
import shutil
import subprocess

import graphviz
import numpy as np
import pytest

import graphc as gc
from graphc import viz
from graphc.viz import BACKWARD_EDGE, FILL, FORWARD_EDGE

APPLE_FEEDS = {"apple": 100.0, "num": 2.0, "tax": 1.1}


def apple_graph() -> tuple[gc.Graph, dict[str, gc.Tensor]]:
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple", ()), g.input("num", ()), g.input("tax", ())
    price = apple * num * tax
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    return g, {"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax}


def node_lines(dot: str) -> dict[str, str]:
    """DOT node id -> its attribute text."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(n\d+) \[(.*)\]$", dot, re.M)}


def edge_labels(dot: str) -> list[str]:
    """Edge labels, quoted or not (graphviz writes a label that is a valid DOT ID, such as 2.2, bare)."""
    return [q or bare for q, bare in re.findall(r'-> \w+ \[[^\]]*label=(?:"([^"]*)"|([^\s\]"]+))', dot)]


def has_label(text: str, label: str) -> bool:
    return re.search(rf'label=(?:"{re.escape(label)}"|{re.escape(label)}\b)', text) is not None


def cluster_body(dot: str, name: str) -> str:
    match = re.search(r"subgraph cluster_" + name + r" \{(.*?)\n\s*\}", dot, re.S)
    assert match, f"no cluster {name} in\n{dot}"
    return match.group(1)


def test_two_clusters_with_forward_and_backward_nodes():
    g, _ = apple_graph()
    dot = viz.to_dot(g)
    assert dot.startswith("digraph apple {") and dot.rstrip().endswith("}")
    forward, backward = cluster_body(dot, "forward"), cluster_body(dot, "backward")
    assert has_label(forward, "forward") and has_label(backward, "backward")
    for n in g.nodes:  # every forward node is drawn; a drawn node sits in its own cluster
        if n.op != "const":
            assert (n.name in backward) == (n.backward and n.name in dot), n
            assert n.backward or n.name in forward, n
    # backward ops are filled with their own colour, forward ops with theirs
    assert FILL["backward"] in backward and FILL["backward"] not in forward
    assert FILL["forward"] in forward and FILL["forward"] not in backward
    assert FILL["input"] in forward


def test_labels_show_name_op_shape_and_dtype():
    g = gc.Graph("labels")
    x = g.input("x", (3, 4), "float64")
    w = g.param("w", np.ones((4, 2)), dtype="float64")
    y = (x @ w).sum(axis=1)
    dot = viz.to_dot(y)
    labels = node_lines(dot)
    texts = " | ".join(labels.values())
    assert r'"x\ninput\nfloat64[3, 4]"' in texts
    assert r'"w\nparam\nfloat64[4, 2]"' in texts
    assert "shape=box3d" in texts and "shape=ellipse" in texts
    assert "sum axis=(1,)" in texts or "sum axis=1" in texts
    assert "float64[3]" in texts


def test_small_constants_show_their_value():
    g = gc.Graph("c")
    x = g.input("x", ())
    y = x * 2.5 + 1.0
    dot = viz.to_dot(y)
    assert r'"2.5\nconst float32[]"' in dot
    assert r'"1\nconst float32[]"' in dot
    assert "shape=note" in dot


def test_apple_values_from_program_results():
    g, outs = apple_graph()
    results = gc.compile(outs, backend="numpy")(**APPLE_FEEDS)
    assert set(results.feeds) == {"apple", "num", "tax"}
    dot = viz.to_dot(g, values=results)
    labels = edge_labels(dot)
    for value in ("100", "2", "1.1", "200", "220", "2.2", "110"):
        assert value in labels, (value, labels)
    # outputs get a final arrow with their name, carrying their value
    assert re.search(r'(n\d+) -> \1_out \[[^\]]*label="?220"?', dot)
    assert re.search(r'label="?price"?[^\]]* shape=plaintext', dot)
    for name in ("d_apple", "d_num", "d_tax"):
        assert has_label(dot, name)
    # gradients travel on backward-coloured edges, forward values on forward-coloured ones
    assert re.search(rf'label="?2\.2"? color="{BACKWARD_EDGE}"', dot)
    assert re.search(rf'label="?220"? color="{FORWARD_EDGE}"', dot)
    # a forward value consumed by the backward graph is dashed
    assert "style=dashed" in dot


def test_render_of_outputs_draws_only_ancestors():
    g, outs = apple_graph()
    g.input("unused", ())
    dot = viz.to_dot(outs["price"])
    assert "unused" not in dot and "cluster_backward" not in dot
    assert "unused" in viz.to_dot(g)


def test_plain_mapping_values_by_name_and_computed_from_inputs():
    g, outs = apple_graph()
    dot = viz.to_dot(outs, values={"price": 220.0})
    # only the given output has a value (the backward pass's seed 1 is not drawn: see the next tests)
    assert sorted(edge_labels(dot)) == ["220"]
    dot = viz.to_dot(g, values=dict(APPLE_FEEDS))
    labels = edge_labels(dot)
    for value in ("220", "2.2", "110", "200"):
        assert value in labels


def test_values_of_an_array_graph_are_summarized():
    g = gc.Graph("arrays")
    x = g.input("x", (2, 3))
    y = (x * x).sum()
    dot = viz.to_dot(y, values={"x": np.arange(6.0).reshape(2, 3)})
    assert "[2x3] 0..5" in edge_labels(dot)
    assert "55" in edge_labels(dot)


def test_format_value():
    assert viz.format_value(np.float32(2.2)) == "2.2"
    assert viz.format_value(220.0) == "220"
    assert viz.format_value(np.array([1.0, 2.5])) == "[1, 2.5]"
    assert viz.format_value(np.arange(12).reshape(3, 4)) == "[3x4] 0..11"
    assert viz.format_value(np.int64(7)) == "7"
    assert viz.format_value(np.zeros((0, 3))) == "[0x3] empty"


def test_render_dot_writes_the_text(tmp_path):
    g, outs = apple_graph()
    path = tmp_path / "sub" / "apple.dot"
    picture = gc.render(g, path)
    assert isinstance(picture, graphviz.Digraph) and picture.path == str(path)
    assert path.read_text() == viz.to_dot(g) == picture.source


def test_render_without_dot_writes_dot_and_one_hint_line(tmp_path, monkeypatch, capsys):
    g, outs = apple_graph()
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    written = gc.render(g, tmp_path / "apple.svg")
    assert written.path == str(tmp_path / "apple.dot")
    assert (tmp_path / "apple.dot").read_text().startswith("digraph")
    assert not (tmp_path / "apple.svg").exists()
    captured = capsys.readouterr()
    hint = (captured.out + captured.err).strip().splitlines()
    assert len(hint) == 1 and "dot" in hint[0] and "graphviz" in hint[0].lower()


def test_render_with_empty_path_env(tmp_path, monkeypatch, capsys):
    _, outs = apple_graph()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert gc.render(outs, tmp_path / "apple.png").path.endswith("apple.dot")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apple.dot"]
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_render_svg_with_graphviz(tmp_path):
    g, outs = apple_graph()
    results = gc.compile(outs, backend="numpy")(**APPLE_FEEDS)
    path = tmp_path / "apple.svg"
    assert gc.render(g, path, values=results).path == str(path)
    svg = path.read_text()
    assert "<svg" in svg and "backward" in svg and ">2.2<" in svg and ">220<" in svg


def test_errors_are_clear(tmp_path):
    g, outs = apple_graph()
    with pytest.raises(gc.GraphcError, match="extension"):
        gc.render(g, tmp_path / "apple.jpg2")
    with pytest.raises(gc.GraphcError, match="Graph, a tensor"):
        viz.to_dot(42)
    with pytest.raises(gc.GraphcError, match="not a graphc tensor"):
        viz.to_dot({"a": 1.0})
    with pytest.raises(gc.GraphcError, match="values must be a mapping"):
        viz.to_dot(g, values=[1, 2])


# ------------------------------------------------------------------------- graphviz.Digraph, Jupyter, files

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
APPLE_VALUES = ("100", "2", "200", "1.1", "220")
APPLE_GRADIENTS = ("2.2", "110")


def apple_results() -> tuple[gc.Graph, dict[str, gc.Tensor], dict]:
    g, outs = apple_graph()
    return g, outs, gc.compile(outs, backend="numpy")(**APPLE_FEEDS)


def svg_texts(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_render_returns_a_digraph_without_writing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g, outs, results = apple_results()
    picture = gc.render(g, values=results)
    assert isinstance(picture, graphviz.Digraph) and isinstance(picture, viz.Picture)
    assert picture.path is None and list(tmp_path.iterdir()) == []
    assert picture.source == viz.to_dot(g, values=results)
    assert isinstance(viz.to_graphviz(outs), graphviz.Digraph)


def test_rendered_picture_knows_its_path(tmp_path):
    _, outs = apple_graph()
    path = tmp_path / "apple.gv"
    picture = gc.render(outs, path)
    assert picture.path == str(path)
    assert path.read_text() == picture.source
    assert picture.source.startswith("digraph apple {")


def test_apple_picture_carries_values_and_gradients():
    _, outs, results = apple_results()
    labels = edge_labels(gc.render(outs, values=results).source)
    for value in APPLE_VALUES + APPLE_GRADIENTS:
        assert value in labels, (value, labels)


def test_dot_label_escapes():
    assert viz.dot_label("a\nb") == "a\\nb"
    assert viz.dot_label("a\\b") == "a\\\\b"
    assert isinstance(viz.dot_label("<b>"), graphviz.quoting.NoHtml)


@needs_dot
def test_jupyter_mimebundle_is_svg():
    _, outs, results = apple_results()
    bundle = gc.render(outs, values=results)._repr_mimebundle_()
    assert "image/svg+xml" in bundle
    svg = bundle["image/svg+xml"]
    assert "<svg" in svg
    texts = svg_texts(svg)
    for value in APPLE_VALUES + APPLE_GRADIENTS:
        assert value in texts, (value, texts)


@needs_dot
def test_awkward_names_give_valid_dot(recwarn):
    name = 'say "hi"\\ back\\\n<b>bold</b>'
    g = gc.Graph('we"ird\\')
    x, t = g.input(name, ()), g.input("tail\\", ())
    y = x * t
    picture = gc.render({"<b>y</b>": y, 'q"uote': x}, values={name: 2.0, "tail\\": 3.0})
    proc = subprocess.run(["dot", "-Tsvg"], input=picture.source, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    texts = svg_texts(proc.stdout)
    for text in ("we&quot;ird\\", "say &quot;hi&quot;\\ back\\", "&lt;b&gt;bold&lt;/b&gt;", "tail\\",
                 "&lt;b&gt;y&lt;/b&gt;", "q&quot;uote", "6"):
        assert text in texts, (text, texts)
    assert "<svg" in picture._repr_mimebundle_()["image/svg+xml"]
    assert not [w for w in recwarn if issubclass(w.category, graphviz.DotSyntaxWarning)]


@pytest.mark.parametrize("name, magic", [("apple.svg", b"<?xml"), ("apple.png", b"\x89PNG"), ("apple.pdf", b"%PDF"),
                                         ("apple.dot", b"digraph"), ("apple.gv", b"digraph")])
def test_files_are_written_exactly_at_the_path(tmp_path, name, magic):
    if not name.endswith(("dot", "gv")) and shutil.which("dot") is None:
        pytest.skip("Graphviz dot is not installed")
    _, outs, results = apple_results()
    folder = tmp_path / "out"
    picture = gc.render(outs, folder / name, values=results)
    assert picture.path == str(folder / name)
    assert [p.name for p in folder.iterdir()] == [name]
    assert (folder / name).read_bytes().startswith(magic)
    if name.endswith("svg"):
        texts = svg_texts((folder / name).read_text())
        for value in APPLE_VALUES + APPLE_GRADIENTS:
            assert value in texts, (value, texts)


def test_missing_executable_reported_by_graphviz(tmp_path, monkeypatch, capsys):
    """``dot`` on PATH for shutil.which but not runnable: graphviz.ExecutableNotFound takes the same fallback."""
    def not_found(self, *args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/dot")
    monkeypatch.setattr(viz.Picture, "pipe", not_found)
    _, outs = apple_graph()
    picture = gc.render(outs, tmp_path / "apple.pdf")
    assert picture.path == str(tmp_path / "apple.dot")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apple.dot"]
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_dot_failure_is_a_graphc_error(tmp_path, monkeypatch):
    def fails(self, *args, **kwargs):
        raise graphviz.CalledProcessError(1, ["dot", "-Tsvg"], b"", b"Error: syntax error in line 1\n")

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/dot")
    monkeypatch.setattr(viz.Picture, "pipe", fails)
    _, outs = apple_graph()
    with pytest.raises(gc.GraphcError, match="failed writing .*syntax error"):
        gc.render(outs, tmp_path / "apple.svg")
    assert list(tmp_path.iterdir()) == []


def _chain(power: float) -> tuple[dict[str, gc.Tensor], dict[str, float]]:
    g = gc.Graph("chain")
    x, y = g.input("x", (), "float64"), g.input("y", (), "float64")
    z = gc.pow(gc.add(x, y, name="t"), power, name="z")
    return {"z": z, "dz_dx": gc.grad(z, x)}, {"x": 1.5, "y": 2.0}


def test_backward_noise_is_left_out_of_the_graph_picture():
    """The power rule's literal 2·t^(2−1)·1 is drawn as what it is, 2 × t = 7: the seed's × 1, the folded 2 − 1
    and t¹ are not drawn (the graph itself keeps them)."""
    outs, feeds = _chain(2.0)
    graph = outs["z"].graph
    assert {n.op for n in graph.nodes if n.backward} >= {"sub", "pow", "mul"}  # what autodiff built
    results = gc.compile(outs, backend="numpy")(**feeds)
    dot = viz.to_dot(graph, values=results)
    backward = cluster_body(dot, "backward")
    drawn = re.findall(r"label=\"(\w+)\\n(\w+)\\n", backward)
    assert [op for _, op in drawn] == ["mul"], backward
    assert re.search(r'(n\d+) -> \1_out \[[^\]]*label="?7"?', dot)  # dz/dx = 2(x + y)
    assert "1\\nconst" not in dot  # neither the seed nor the exponent's 1


def test_constant_only_backward_nodes_are_drawn_folded():
    outs, feeds = _chain(3.0)  # 3 · t^(3 − 1): 3 − 1 is folded to 2
    results = gc.compile(outs, backend="numpy")(**feeds)
    backward = cluster_body(viz.to_dot(outs["z"].graph, values=results), "backward")
    assert "2\\nconst float64[] (folded)" in backward and "\\nsub\\n" not in backward
    assert "\\npow\\n" in backward  # t² stays: its exponent is not 1
