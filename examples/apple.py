"""The apple-purchase graph: 2 apples at 100 each, consumption tax 1.1.

Forward: price = apple * num * tax = 220. Backward (symbolic autodiff): d price / d apple = num * tax = 2.2,
d price / d num = apple * tax = 110, d price / d tax = apple * num = 200.

    python examples/apple.py [OUT.svg]          # prints the numbers, writes the forward+backward graph to OUT
                                                # (default apple.svg) and the textbook figure to OUT_textbook.svg
    python examples/apple.py --textbook docs/apple_textbook.svg   # only the textbook figure, there
    graphc run examples/apple.py --feed num=3   # the same numbers through the CLI

The textbook figure (``gc.render(..., style="textbook")``) reads like the course's: 100 → ×2 → 200 → ×1.1 → 220
above the arrows, and under each arrow the gradient flowing back: 2.2, 110, 1.1, 200, 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import graphc as gc

FEEDS = {"apple": 100.0, "num": 2.0, "tax": 1.1}


def outputs() -> dict[str, gc.Tensor]:
    """The price and its gradients with respect to the three inputs."""
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple", ()), g.input("num", ()), g.input("tax", ())
    apple_price = gc.mul(apple, num, name="apple_price")
    price = gc.mul(apple_price, tax, name="price")
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    return {"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax}


def textbook_path(path: str) -> str:
    """``out/apple.svg`` -> ``out/apple_textbook.svg``."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}_textbook{p.suffix}"))


def parse_args(argv: list[str], default: str | None) -> argparse.Namespace:
    """OUT (the forward+backward graph) and --textbook PATH (the textbook figure, default OUT_textbook.EXT)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help=f"the graph picture (default: {default or 'none'})")
    parser.add_argument("--textbook", metavar="PATH", help="the textbook figure (default: OUT_textbook.EXT)")
    args = parser.parse_args(argv)
    if args.out is None and args.textbook is None:
        args.out = default
    if args.textbook is None and args.out is not None:
        args.textbook = textbook_path(args.out)
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv, "apple.svg")
    outs = outputs()
    results = gc.compile(outs, backend="numpy")(**FEEDS)
    for name, value in results.items():
        print(f"{name} = {float(value):.6g}")
    if args.out:
        print(f"graph written to {gc.render(outs, args.out, values=results).path}")
    if args.textbook:
        picture = gc.render(outs, args.textbook, values=results, style="textbook")
        print(f"textbook picture written to {picture.path}")


if __name__ == "__main__":
    main(sys.argv[1:])
