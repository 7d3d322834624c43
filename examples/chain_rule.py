"""The chain rule, numerically: z = t**2 with t = x + y, so dz/dx = dz/dt * dt/dx = 2t * 1 = 2(x + y).

    python examples/chain_rule.py [OUT.svg]     # with OUT also the textbook figure: x, y → + → t → **2 → z, and
                                                # under each arrow the gradient: 1 from z, 2t = 7 back to t, x, y
"""

from __future__ import annotations

import sys

import graphc as gc

FEEDS = {"x": 1.5, "y": 2.0}


def outputs() -> dict[str, gc.Tensor]:
    """z and its gradients with respect to x and y."""
    g = gc.Graph("chain_rule")
    x, y = g.input("x", (), "float64"), g.input("y", (), "float64")
    t = gc.add(x, y, name="t")
    z = gc.pow(t, 2.0, name="z")
    dz_dx, dz_dy = gc.grad(z, [x, y])
    return {"t": t, "z": z, "dz_dx": dz_dx, "dz_dy": dz_dy}


def main(argv: list[str]) -> None:
    outs = outputs()
    results = gc.compile(outs, backend="numpy")(**FEEDS)
    x, y = FEEDS["x"], FEEDS["y"]
    for name, value in results.items():
        print(f"{name} = {float(value):.6g}")
    print(f"2(x + y) = {2 * (x + y):.6g}  (dz/dx by hand, for comparison)")
    if argv:
        picture = gc.render(outs["z"], argv[0], values=results, style="textbook")
        print(f"textbook picture written to {picture.path}")


if __name__ == "__main__":
    main(sys.argv[1:])
