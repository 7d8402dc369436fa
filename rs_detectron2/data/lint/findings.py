"""What a dataset check found, and the one place that prints it.

Every check of the dataset linter (:mod:`rs_detectron2.data.lint`) returns :class:`Finding`
objects instead of printing or logging; :func:`format_findings` turns a list of them into the
report that ``python -m rs_detectron2.data.check`` prints (see datasets/README.md, "Checking a
layout").

Severities: ``"error"``: the data cannot be trained on, or training would silently learn from
wrong targets (the check command exits with 1); ``"warning"``: the data is usable, but something is
clipped, dropped (with a count) or ignored (``--strict`` turns these into a failure); ``"info"``:
statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

__all__ = ["ERROR", "WARNING", "INFO", "Finding", "format_findings", "exit_code", "examples"]

ERROR, WARNING, INFO = "error", "warning", "info"
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Finding:
    """One thing a check found.

    Attributes:
        severity: ``"error"``, ``"warning"`` or ``"info"`` (see the module docstring).
        dataset: the dataset name it belongs to (``""`` for the command line or the config).
        message: what was found, self-contained (names the file and, for grouped findings, up to
            five examples).
        fix: what the user should do about it; empty when nothing needs doing.
        file: the annotation JSON or the (first) image file concerned, if any.
        annotation_id, image_id: the (first) annotation / image concerned, if any.
        count: how many annotations / images / categories the finding groups (1 for one).
        code: a short stable identifier of the kind of finding (e.g. ``"image_unreadable"``).
    """

    severity: str
    dataset: str
    message: str
    fix: str = ""
    file: Optional[str] = None
    annotation_id: Optional[int] = None
    image_id: Optional[int] = None
    count: int = 1
    code: str = ""


def examples(items: Iterable, n: int = _MAX_EXAMPLES) -> str:
    """The first ``n`` items joined with ", ", followed by ", ..." when there are more."""
    items = list(items)
    text = ", ".join(str(x) for x in items[:n])
    return text + (", ..." if len(items) > n else "")


def _counts(findings: Iterable[Finding]) -> Dict[str, int]:
    out = {ERROR: 0, WARNING: 0, INFO: 0}
    for f in findings:
        out[f.severity] += 1
    return out


def exit_code(findings: Iterable[Finding], strict: bool = False) -> int:
    """1 when there is an error (with ``strict`` also when there is a warning), else 0."""
    counts = _counts(findings)
    return 1 if counts[ERROR] or (strict and counts[WARNING]) else 0


def _lines(f: Finding) -> List[str]:
    if f.severity == INFO:
        return [f"   {f.message}"]
    lines = [f"   {f.severity.upper()}: {f.message}"]
    if f.fix:
        lines.append(f"      fix: {f.fix}")
    return lines


def format_findings(findings: List[Finding], *, strict: bool = False) -> str:
    """The report: findings grouped by dataset (in order of first appearance), statistics first,
    then warnings, then errors, each with its fix; and a last line
    ``OK|FAILED: N error(s), M warning(s)`` (``FAILED`` as in :func:`exit_code`).

    Args:
        findings: in the order the checks produced them.
        strict: count warnings as failures.

    Returns:
        str: the report, lines separated by ``"\\n"``, no trailing newline.
    """
    order = {INFO: 0, WARNING: 1, ERROR: 2}
    by_dataset: Dict[str, List[Finding]] = {}
    for f in findings:
        by_dataset.setdefault(f.dataset, []).append(f)
    lines: List[str] = []
    for dataset, group in by_dataset.items():
        if dataset:
            lines.append(f"== {dataset}")
        for f in sorted(group, key=lambda f: order[f.severity]):  # stable: keeps check order
            lines += _lines(f)
    counts = _counts(findings)
    status = "FAILED" if exit_code(findings, strict) else "OK"
    lines.append(f"{status}: {counts[ERROR]} error(s), {counts[WARNING]} warning(s)")
    return "\n".join(lines)
