"""How ``brski pledge conformance`` reports: the per-case result, a table, JUnit XML.

Outcomes: ``pass`` and ``fail`` judge the registrar; ``skip`` means the case
could not run (say, no second pledge); ``inconclusive`` means a refusal case
got the very answer the happy path already failed with, so the refusal says
nothing about the rule the case checks; ``report`` is for what the RFC leaves
to the registrar (the telemetry answers of RFC 8995 5.7 and 5.9.4, which "the
client ignores"): shown, never judged.  Only ``fail`` makes the run fail.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["OUTCOMES", "CaseResult", "format_table", "junit_xml"]

OUTCOMES = ("pass", "fail", "skip", "inconclusive", "report")


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    name: str
    section: str
    expected: str
    outcome: str  # one of OUTCOMES
    observed: str
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {OUTCOMES}")


def format_table(results: Sequence[CaseResult]) -> str:
    w = max(len(r.name) for r in results)
    sw = max(len(r.section) for r in results)
    lines = [f"{'RESULT':<12}  {'CASE':<{w}}  {'SECTION':<{sw}}  EXPECTED -> OBSERVED"]
    for r in results:
        lines.append(f"{r.outcome.upper():<12}  {r.name:<{w}}  {r.section:<{sw}}  {r.expected} -> {r.observed}")
    n = {k: sum(1 for r in results if r.outcome == k) for k in OUTCOMES}
    lines.append(
        f"{len(results)} cases: {n['pass']} passed, {n['fail']} failed, {n['skip']} skipped, "
        f"{n['inconclusive']} inconclusive, {n['report']} reported"
    )
    return "\n".join(lines)


def junit_xml(results: Sequence[CaseResult], *, registrar: str) -> bytes:
    """JUnit: inconclusive cases are skipped (with the reason), reported ones pass with the answer as output."""
    suite = ET.Element(
        "testsuite", name="brski-conformance", tests=str(len(results)),
        failures=str(sum(r.outcome == "fail" for r in results)),
        skipped=str(sum(r.outcome in ("skip", "inconclusive") for r in results)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="registrar", value=registrar)
    for r in results:
        tc = ET.SubElement(suite, "testcase", classname=r.section, name=r.name, time=f"{r.seconds:.3f}")
        if r.outcome == "fail":
            ET.SubElement(tc, "failure", message=f"expected {r.expected}, observed {r.observed}")
        elif r.outcome == "skip":
            ET.SubElement(tc, "skipped", message=r.observed)
        elif r.outcome == "inconclusive":
            ET.SubElement(tc, "skipped", message=f"inconclusive: {r.observed}")
        elif r.outcome == "report":
            ET.SubElement(tc, "system-out").text = f"reported: {r.observed}"
    ET.indent(suite)
    out: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return out + b"\n"
