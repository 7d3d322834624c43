"""Apples and oranges: 2 apples at 100, 3 oranges at 150, tax 1.1.

price = (apple * apple_num + orange * orange_num) * tax = 715. The addition node passes its gradient to both
branches unchanged, so d_apple = apple_num * tax = 2.2, d_apple_num = apple * tax = 110, d_orange = 3.3,
d_orange_num = 165, and d_tax = apple * apple_num + orange * orange_num = 650.

    python examples/apple_orange.py [OUT.svg]
"""

from __future__ import annotations

import sys

import graphc as gc

FEEDS = {"apple": 100.0, "apple_num": 2.0, "orange": 150.0, "orange_num": 3.0, "tax": 1.1}


def outputs() -> dict[str, gc.Tensor]:
    """The total price and its gradients with respect to every input."""
    g = gc.Graph("apple_orange")
    apple, apple_num = g.input("apple", ()), g.input("apple_num", ())
    orange, orange_num = g.input("orange", ()), g.input("orange_num", ())
    tax = g.input("tax", ())
    price = (apple * apple_num + orange * orange_num) * tax
    grads = gc.grad(price, [apple, apple_num, orange, orange_num, tax])
    names = ["d_apple", "d_apple_num", "d_orange", "d_orange_num", "d_tax"]
    return {"price": price, **dict(zip(names, grads))}


def main(argv: list[str]) -> None:
    outs = outputs()
    results = gc.compile(outs, backend="numpy")(**FEEDS)
    for name, value in results.items():
        print(f"{name} = {float(value):.6g}")
    if argv:
        print(f"graph written to {gc.render(outs, argv[0], values=results).path}")


if __name__ == "__main__":
    main(sys.argv[1:])
