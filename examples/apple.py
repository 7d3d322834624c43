"""The apple-purchase graph: 2 apples at 100 each, consumption tax 1.1.

Forward: price = apple * num * tax = 220. Backward (symbolic autodiff): d price / d apple = num * tax = 2.2,
d price / d num = apple * tax = 110, d price / d tax = apple * num = 200.

    python examples/apple.py [OUT.svg]          # prints the numbers and renders the graph (default apple.svg)
    graphc run examples/apple.py --feed num=3   # the same numbers through the CLI
"""

from __future__ import annotations

import sys

import graphc as gc

FEEDS = {"apple": 100.0, "num": 2.0, "tax": 1.1}


def outputs() -> dict[str, gc.Tensor]:
    """The price and its gradients with respect to the three inputs."""
    g = gc.Graph("apple")
    apple, num, tax = g.input("apple", ()), g.input("num", ()), g.input("tax", ())
    price = apple * num * tax
    d_apple, d_num, d_tax = gc.grad(price, [apple, num, tax])
    return {"price": price, "d_apple": d_apple, "d_num": d_num, "d_tax": d_tax}


def main(argv: list[str]) -> None:
    outs = outputs()
    results = gc.compile(outs, backend="numpy")(**FEEDS)
    for name, value in results.items():
        print(f"{name} = {float(value):.6g}")
    path = gc.render(outs, argv[0] if argv else "apple.svg", values=results).path
    print(f"graph written to {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
