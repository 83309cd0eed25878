"""Prints the chaos campaign's fault report at the end of the run (also without `-s`)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

FAULT_REPORTS = pytest.StashKey[list[str]]()


@pytest.fixture
def publish_fault_report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Keep a report table for the terminal summary."""

    def publish(table: str) -> None:
        request.config.stash.setdefault(FAULT_REPORTS, []).append(table)

    return publish


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    for table in config.stash.get(FAULT_REPORTS, []):
        terminalreporter.section("medledger fault report")
        terminalreporter.write_line(table)
    # The fuzz suite runs after the campaign in one session; its count completes the report.
    fuzz_stats = sys.modules.get("tests.fuzz.stats")
    if fuzz_stats is not None and config.stash.get(FAULT_REPORTS, []):
        counts = fuzz_stats.summary()
        terminalreporter.write_line(
            f"fuzz cases run in this session: {counts['fuzz_cases']} "
            f"(failing properties: {counts['failures']})"
        )
