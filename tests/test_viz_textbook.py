"""Textbook pictures (``style="textbook"``): the course's apple figures with every forward value and gradient on
the right edge, and pictures that display in notebooks (``_repr_mimebundle_``/``_repr_svg_``) with or without
Graphviz's ``dot``."""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import graphviz
import numpy as np
import pytest

import graphc as gc
from graphc import viz
from graphc.viz_textbook import GRADIENT_COLOUR, VALUE_COLOUR

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
APPLE_FEEDS = {"apple": 100.0, "num": 2.0, "tax": 1.1}
FRUIT_FEEDS = {"apple": 100.0, "apple_num": 2.0, "orange": 150.0, "orange_num": 3.0, "tax": 1.1}


def apple() -> tuple[gc.Graph, dict[str, gc.Tensor]]:
    """The course's apple purchase, its op nodes named, with the gradients the example also returns."""
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple"), g.input("num"), g.input("tax")
    apple_price = gc.mul(apple, num, name="apple_price")
    price = gc.mul(apple_price, tax, name="price")
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    return g, {"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax}


def apple_orange() -> tuple[gc.Graph, dict[str, gc.Tensor]]:
    g = gc.Graph("apple_orange")
    apple, apple_num = g.input("apple"), g.input("apple_num")
    orange, orange_num, tax = g.input("orange"), g.input("orange_num"), g.input("tax")
    all_price = gc.add(gc.mul(apple, apple_num, name="apple_price"), gc.mul(orange, orange_num, name="orange_price"),
                       name="all_price")
    price = gc.mul(all_price, tax, name="price")
    grads = gc.grad(price, [apple, apple_num, orange, orange_num, tax])
    return g, {"price": price, **dict(zip(["d_apple", "d_apple_num", "d_orange", "d_orange_num", "d_tax"], grads))}


def nodes(dot: str) -> dict[str, tuple[str, str]]:
    """DOT node id -> (node name from its tooltip, its label text without markup)."""
    found = {}
    for node_id, attrs in re.findall(r"^\s*(n\d+(?:_out)?) \[(.*)\]$", dot, re.M):
        tip = re.search(r'tooltip="([^"]*)"', attrs)
        label = re.search(r'label=(?:<((?:[^<>]|<[^<>]*>)*)>|"([^"]*)"|(\S+))', attrs)
        text = html.unescape(re.sub(r"<[^>]*>", "", "".join(g or "" for g in label.groups()))) if label else ""
        found[node_id] = (tip.group(1).split(":")[0].removeprefix("output ") if tip else node_id, text)
    return found


def edges(dot: str) -> list[tuple[str, str, str, str | None]]:
    """(source name, target name, forward value, gradient or None) of every edge, read from the label's coloured
    rows: the value in the forward colour above, ``← gradient`` in the gradient colour below."""
    names = {k: v[0] for k, v in nodes(dot).items()}
    out = []
    for src, dst, attrs in re.findall(r"^\s*(\w+) -> (\w+) \[(.*)\]$", dot, re.M):
        value = re.search(rf'<font color="{VALUE_COLOUR}">([^<]*)</font>', attrs)
        grad = re.search(rf'<br/><font color="{GRADIENT_COLOUR}">← ([^<]*)</font>', attrs)
        out.append((names[src], names[dst], value.group(1) if value else "", grad.group(1) if grad else None))
    return out


def textbook_dot(make, feeds) -> str:
    _, outs = make()
    results = gc.compile(outs, backend="numpy")(**feeds)
    return gc.render(outs, values=results, style="textbook").source


def test_apple_figure_has_every_course_value_on_its_edge():
    dot = textbook_dot(apple, APPLE_FEEDS)
    assert sorted(edges(dot)) == sorted([
        ("apple", "apple_price", "100", "2.2"),
        ("num", "apple_price", "2", "110"),
        ("apple_price", "price", "200", "1.1"),
        ("tax", "price", "1.1", "200"),
        ("price", "price", "220", "1"),  # the output's own arrow: its value and the seed
    ])
    labels = sorted(text for _, text in nodes(dot).values())
    assert labels == ["apple", "num", "price", "tax", "×", "×"]  # two × ops, leaves and the output as plain labels
    assert "cluster_backward" not in dot and "rankdir=LR" in dot


def test_apple_orange_add_passes_the_gradient_to_both_branches():
    dot = textbook_dot(apple_orange, FRUIT_FEEDS)
    assert sorted(edges(dot)) == sorted([
        ("apple", "apple_price", "100", "2.2"),
        ("apple_num", "apple_price", "2", "110"),
        ("orange", "orange_price", "150", "3.3"),
        ("orange_num", "orange_price", "3", "165"),
        ("apple_price", "all_price", "200", "1.1"),
        ("orange_price", "all_price", "450", "1.1"),
        ("all_price", "price", "650", "1.1"),
        ("tax", "price", "1.1", "650"),
        ("price", "price", "715", "1"),
    ])
    ops = {name: text for name, text in nodes(dot).values() if text in "×+"}
    assert ops == {"apple_price": "×", "orange_price": "×", "all_price": "+", "price": "×"}
    # a name the user gave is written next to its op; generated names are not
    assert 'xlabel=all_price' in dot and 'xlabel=apple_price' in dot


def test_plain_feeds_and_a_whole_graph_give_the_same_figure():
    g, outs = apple()
    from_results = textbook_dot(apple, APPLE_FEEDS)
    assert gc.render(g, values=dict(APPLE_FEEDS), style="textbook").source == from_results
    assert viz.to_dot(outs["price"], values=dict(APPLE_FEEDS), style="textbook") == from_results


def test_the_user_graph_is_not_touched_and_no_backward_node_is_drawn():
    g, outs = apple()
    before = [n.name for n in g.nodes]
    dot = gc.render(outs, values=APPLE_FEEDS, style="textbook").source
    assert [n.name for n in g.nodes] == before
    backward = [n.name for n in g.nodes if n.backward]
    assert backward and not any(f'tooltip="{name}:' in dot for name in backward)


def test_a_reused_input_shows_each_edge_its_own_gradient():
    g = gc.Graph("square")
    x = g.input("x", (), "float64")
    y = gc.add(x * x, (x + 1.0) ** 2, name="y")
    dot = gc.render(y, values={"x": 3.0}, style="textbook").source
    found = edges(dot)
    assert found.count(("x", "mul_1", "3", "3")) == 2  # d(x·x)/dx = 3 + 3, one contribution per edge
    assert ("x", "add_1", "3", "8") in found  # 2(x + 1), the constant 1 written into the op
    assert ("add_1", "pow_1", "4", "8") in found and ("pow_1", "y", "16", "1") in found
    labels = [text for _, text in nodes(dot).values()]
    assert "+1" in labels and "**2" in labels and "1" not in labels and "2" not in labels
    assert gc.grad(y, x) is not None  # the graph still differentiates as before


def test_params_and_array_values():
    g = gc.Graph("dense")
    x = g.input("x", (2, 3))
    w = g.param("w", np.ones((3, 2)))
    loss = gc.sum(gc.relu(x @ w), name="loss")
    dot = gc.render(loss, values={"x": np.arange(6.0).reshape(2, 3)}, style="textbook").source
    found = {(s, d): (v, gr) for s, d, v, gr in edges(dot)}
    assert found[("x", "matmul_1")] == ("[2x3] 0..5", "[2x3] 2..2")  # each x feeds both ones-columns of w
    assert found[("w", "matmul_1")] == ("[3x2] 1..1", "[3x2] 3..7")  # x summed over the batch
    assert found[("loss", "loss")] == ("30", "1")
    labels = {text for _, text in nodes(dot).values()}
    assert {"@", "relu", "sum"} <= labels


def test_without_values_or_gradients():
    g, outs = apple()
    dot = gc.render(outs, style="textbook").source
    assert all(v == "" and gr is None for *_, v, gr in edges(dot)) and "gradient" not in dot
    # a value the mapping gives only for the output: no gradients, and the picture says why
    dot = gc.render(outs, values={"price": 220.0}, style="textbook").source
    assert [e for e in edges(dot) if e[2]] == [("price", "price", "220", None)]
    assert "no gradients: no value for apple, num, tax" in dot
    # a non-scalar output has no gradient to draw
    h = gc.Graph("vec")
    v = h.input("v", (2,))
    dot = gc.render(v * 2.0, values={"v": [1.0, 2.0]}, style="textbook").source
    assert "[2, 4]" in dot and "is not a float scalar" in dot


def test_two_outputs_draw_values_without_gradients():
    g = gc.Graph("two")
    a = g.input("a")
    dot = gc.render({"p": a * 2.0, "q": a + 1.0}, values={"a": 3.0}, style="textbook").source
    assert {(s, d, v) for s, d, v, _ in edges(dot)} >= {("mul_1", "p", "6"), ("add_1", "q", "4")}
    assert "more than one output" in dot


def test_style_errors():
    g, outs = apple()
    with pytest.raises(gc.GraphcError, match="style must be one of 'graph', 'textbook', got 'fancy'"):
        gc.render(outs, style="fancy")
    with pytest.raises(gc.GraphcError, match="style must be one of"):
        viz.to_dot(g, style="Textbook")
    with pytest.raises(gc.GraphcError, match="give its output"):
        gc.render({"d_apple": outs["d_apple"]}, style="textbook")
    with pytest.raises(gc.GraphcError, match="no forward op"):
        empty = gc.Graph("empty")
        empty.input("x")
        gc.render(empty, style="textbook")


def test_render_without_path_writes_nothing_and_with_path_writes_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, outs = apple()
    picture = gc.render(outs, values=APPLE_FEEDS, style="textbook")
    assert isinstance(picture, viz.Picture) and picture.path is None and list(tmp_path.iterdir()) == []
    written = gc.render(outs, tmp_path / "a.dot", values=APPLE_FEEDS, style="textbook")
    assert (tmp_path / "a.dot").read_text() == written.source == picture.source


@needs_dot
def test_awkward_names_and_a_leaf_output_give_valid_dot():
    name = 'say "hi"\\ <b>bold</b>&'
    g = gc.Graph('we"ird<x>')
    x, t = g.input(name), g.input("tail\\")
    y = gc.mul(x, t, name='<i>"q"</i>&')
    feeds = {name: 2.0, "tail\\": 3.0}
    for target, expected in (({"<b>y</b>": y}, {name, '<i>"q"</i>&', "2", "← 3", "3", "← 2", "6", "← 1", "<b>y</b>"}),
                             (x, {name, "2"})):
        source = gc.render(target, values=feeds, style="textbook").source
        proc = subprocess.run(["dot", "-Tsvg"], input=source, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        texts = {html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", proc.stdout)}
        assert expected <= texts, (expected - texts, texts)


# ------------------------------------------------------------------------------------------ notebooks


@needs_dot
def test_notebook_bundle_is_svg_with_the_figure():
    _, outs = apple()
    picture = gc.render(outs, values=APPLE_FEEDS, style="textbook")
    bundle = picture._repr_mimebundle_()
    assert set(bundle) == {"image/svg+xml", "text/plain"} and bundle["text/plain"] == picture.source
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", bundle["image/svg+xml"])
    for text in ("100", "← 2.2", "2", "← 110", "200", "← 1.1", "1.1", "← 200", "220", "← 1", "×", "price"):
        assert text in texts, (text, texts)
    assert picture._repr_svg_() == bundle["image/svg+xml"]
    assert picture._repr_mimebundle_(include=["image/png"])["image/png"].startswith(b"\x89PNG")
    assert picture._repr_mimebundle_(exclude=["image/svg+xml"]) == {"text/plain": picture.source}
    assert "image/svg+xml" in gc.render(outs)._repr_mimebundle_()  # the graph style too


def test_notebook_without_dot_shows_the_dot_text(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    _, outs = apple()
    picture = gc.render(outs, values=APPLE_FEEDS, style="textbook")
    bundle = picture._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    hint, source = bundle["text/plain"].split("\n", 1)
    assert "Graphviz 'dot' not found" in hint and source == picture.source
    assert picture._repr_svg_() is None
    assert "text/plain" in picture._repr_mimebundle_(include=["image/svg+xml"])  # asked for SVG: still something


def test_notebook_when_dot_fails_or_is_not_runnable(monkeypatch):
    def fails(self, *args, **kwargs):
        raise graphviz.CalledProcessError(1, ["dot", "-Tsvg"], b"", b"Error: bad\n")

    def not_runnable(self, *args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/usr/bin/dot")
    _, outs = apple()
    picture = gc.render(outs)
    monkeypatch.setattr(viz.Picture, "pipe", fails)
    assert picture._repr_mimebundle_()["text/plain"].startswith("// Graphviz 'dot' failed: Error: bad\n")
    assert picture._repr_svg_() is None
    monkeypatch.setattr(viz.Picture, "pipe", not_runnable)
    assert "not found" in picture._repr_mimebundle_()["text/plain"].splitlines()[0]


@needs_dot
@pytest.mark.parametrize("make, feeds, texts", [
    (apple, APPLE_FEEDS, ("100", "← 2.2", "← 110", "200", "← 1.1", "← 200", "220")),
    (apple_orange, FRUIT_FEEDS, ("← 2.2", "← 110", "← 3.3", "← 165", "450", "650", "← 650", "715", "+")),
])
def test_svg_files(tmp_path, make, feeds, texts):
    _, outs = make()
    path = tmp_path / "fig.svg"
    gc.render(outs, path, values=feeds, style="textbook")
    found = re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())
    for text in texts:
        assert text in found, (text, found)
