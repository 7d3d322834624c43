"""The per-op pass/skip table of the ONNX conformance suite, printed at the end of the session.

No ``__init__.py`` in this directory on purpose: it must never become a package named ``onnx`` that shadows the
real one. The cases themselves are built in ``onnx_node_cases.py``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

RESULTS: dict[str, dict[str, Any]] = defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": defaultdict(int)})


def pytest_runtest_logreport(report: Any) -> None:
    props = dict(report.user_properties)
    op = props.get("onnx_op")
    if op is not None:
        op = f"{op} [{props.get('onnx_backend', '?')}]"
    if op is None or (report.when != "call" and not (report.when == "setup" and report.outcome != "passed")):
        return
    row = RESULTS[op]
    if report.outcome == "skipped":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = re.sub(r"(?<!\w)'[^'\s]*'(?!\w)", "<name>", reason.removeprefix("Skipped: "))
        row["skipped"][reason] += 1
    else:
        row[report.outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    tr.write_sep("=", "ONNX conformance: cases per op")
    tr.write_line(f"{'op [backend]':38} {'passed':>6} {'failed':>6} {'skipped':>7}")
    totals = [0, 0, 0]
    for op in sorted(RESULTS):
        row = RESULTS[op]
        skipped = sum(row["skipped"].values())
        totals = [totals[0] + row["passed"], totals[1] + row["failed"], totals[2] + skipped]
        tr.write_line(f"{op:38} {row['passed']:>6} {row['failed']:>6} {skipped:>7}")
        for reason, count in sorted(row["skipped"].items()):
            tr.write_line(f"{'':4}{count:>3} skipped: {reason}")
    tr.write_line(f"{'total':38} {totals[0]:>6} {totals[1]:>6} {totals[2]:>7}")
