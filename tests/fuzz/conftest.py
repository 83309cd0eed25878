"""Hypothesis profiles for the fuzz tests and the fuzz-case summary for the fault report.

HYPOTHESIS_PROFILE=ci (default): modest example counts, the whole fuzz suite in about a
minute. HYPOTHESIS_PROFILE=long: many more examples per property (the long chaos run).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz import stats

_COMMON = {
    "deadline": None,  # a loaded CI machine must not turn slowness into failures
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                              HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
LONG_FACTOR = 50  # the long profile runs every property this many times more examples
# CI explores the same examples on every run (a red CI names a bug in the change, not a new
# random draw); the long profile explores randomly and is where new bugs are hunted.
settings.register_profile("ci", max_examples=40, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=40 * LONG_FACTOR, derandomize=False, **_COMMON)
settings.load_profile(PROFILE)


def examples(ci: int) -> int:
    """Examples for one property: `ci` in the ci profile, LONG_FACTOR times more in long."""
    return ci * LONG_FACTOR if PROFILE == "long" else ci


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        stats.failure()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if stats.summary()["fuzz_cases"] == 0:
        return
    base = Path(str(session.config._tmp_path_factory.getbasetemp()))  # type: ignore[attr-defined]
    stats.write_summary(base)
