"""Apples and oranges: 2 apples at 100, 3 oranges at 150, tax 1.1.

price = (apple * apple_num + orange * orange_num) * tax = 715. The addition node passes its gradient to both
branches unchanged, so d_apple = apple_num * tax = 2.2, d_apple_num = apple * tax = 110, d_orange = 3.3,
d_orange_num = 165, and d_tax = apple * apple_num + orange * orange_num = 650.

    python examples/apple_orange.py [OUT.svg]   # prints the numbers; with OUT also writes the graph there and the
                                                # textbook figure to OUT_textbook.svg
    python examples/apple_orange.py --textbook docs/apple_orange_textbook.svg   # only the textbook figure

In the textbook figure the + node visibly passes its gradient 1.1 back to both branches (200 and 450).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import graphc as gc

FEEDS = {"apple": 100.0, "apple_num": 2.0, "orange": 150.0, "orange_num": 3.0, "tax": 1.1}


def outputs() -> dict[str, gc.Tensor]:
    """The total price and its gradients with respect to every input."""
    g = gc.Graph("apple_orange")
    apple, apple_num = g.input("apple", ()), g.input("apple_num", ())
    orange, orange_num = g.input("orange", ()), g.input("orange_num", ())
    tax = g.input("tax", ())
    apple_price = gc.mul(apple, apple_num, name="apple_price")
    orange_price = gc.mul(orange, orange_num, name="orange_price")
    all_price = gc.add(apple_price, orange_price, name="all_price")
    price = gc.mul(all_price, tax, name="price")
    grads = gc.grad(price, [apple, apple_num, orange, orange_num, tax])
    names = ["d_apple", "d_apple_num", "d_orange", "d_orange_num", "d_tax"]
    return {"price": price, **dict(zip(names, grads))}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """OUT (the forward+backward graph) and --textbook PATH (the textbook figure, default OUT_textbook.EXT)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="the graph picture (default: none)")
    parser.add_argument("--textbook", metavar="PATH", help="the textbook figure (default: OUT_textbook.EXT)")
    args = parser.parse_args(argv)
    if args.textbook is None and args.out is not None:
        out = Path(args.out)
        args.textbook = str(out.with_name(f"{out.stem}_textbook{out.suffix}"))
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
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
