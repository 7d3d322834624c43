"""The per-op pass/skip table of the ONNX conformance suite and the per-kind table of ONNX's model cases
(tests/onnx/test_model_cases.py), printed at the end of the session.

No ``__init__.py`` in this directory on purpose: it must never become a package named ``onnx`` that shadows the
real one. The cases themselves are built in ``onnx_node_cases.py``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any


def _table() -> dict[str, dict[str, Any]]:
    return defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": defaultdict(int)})


RESULTS: dict[str, dict[str, Any]] = _table()  # node cases: "op [backend]" → counts
MODEL_RESULTS: dict[str, dict[str, Any]] = _table()  # model cases: "kind [backend]" → counts


def pytest_runtest_logreport(report: Any) -> None:
    props = dict(report.user_properties)
    table, key = RESULTS, props.get("onnx_op")
    if key is None and "onnx_model_kind" in props:
        table, key = MODEL_RESULTS, props["onnx_model_kind"]
    if key is not None:
        key = f"{key} [{props.get('onnx_backend', '?')}]"
    if key is None or (report.when != "call" and not (report.when == "setup" and report.outcome != "passed")):
        return
    row = table[key]
    if report.outcome == "skipped":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ").split("\n  at ")[0]  # the message, not where it was raised
        reason = re.sub(r"(?<!\w)'[^'\s]*'(?!\w)", "<name>", reason)
        row["skipped"][reason] += 1
    else:
        row[report.outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for table, title, column in ((RESULTS, "ONNX conformance: cases per op", "op [backend]"),
                                 (MODEL_RESULTS, "ONNX model cases: cases per kind", "kind [backend]")):
        if table:
            _write_table(terminalreporter, table, title, column)


def _write_table(tr: Any, table: dict[str, dict[str, Any]], title: str, column: str) -> None:
    """One table: a row of passed/failed/skipped counts per key, each skip reason with its count below it."""
    tr.write_sep("=", title)
    tr.write_line(f"{column:38} {'passed':>6} {'failed':>6} {'skipped':>7}")
    totals = [0, 0, 0]
    for op in sorted(table):
        row = table[op]
        skipped = sum(row["skipped"].values())
        totals = [totals[0] + row["passed"], totals[1] + row["failed"], totals[2] + skipped]
        tr.write_line(f"{op:38} {row['passed']:>6} {row['failed']:>6} {skipped:>7}")
        for reason, count in sorted(row["skipped"].items()):
            tr.write_line(f"{'':4}{count:>3} skipped: {reason}")
    tr.write_line(f"{'total':38} {totals[0]:>6} {totals[1]:>6} {totals[2]:>7}")
