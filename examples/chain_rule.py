"""The chain rule, numerically: z = t**2 with t = x + y, so dz/dx = dz/dt * dt/dx = 2t * 1 = 2(x + y).

    python examples/chain_rule.py
"""

from __future__ import annotations

import graphc as gc

FEEDS = {"x": 1.5, "y": 2.0}


def outputs() -> dict[str, gc.Tensor]:
    """z and its gradients with respect to x and y."""
    g = gc.Graph("chain_rule")
    x, y = g.input("x", (), "float64"), g.input("y", (), "float64")
    t = x + y
    z = t**2
    dz_dx, dz_dy = gc.grad(z, [x, y])
    return {"t": t, "z": z, "dz_dx": dz_dx, "dz_dy": dz_dy}


def main() -> None:
    results = gc.compile(outputs(), backend="numpy")(**FEEDS)
    x, y = FEEDS["x"], FEEDS["y"]
    for name, value in results.items():
        print(f"{name} = {float(value):.6g}")
    print(f"2(x + y) = {2 * (x + y):.6g}  (dz/dx by hand, for comparison)")


if __name__ == "__main__":
    main()
