"""pytest recipe: a unit's test suite uploads its own JUnit XML to FabGuard when the run ends.

Run it as ``pytest --junitxml=report.xml -o junit_family=xunit1`` on a line PC where ``fabguard-station
enroll`` was done. The suite names its unit with ``record_testsuite_property("serial", ...)``; each
``record_property(name, value)`` is a measurement (``name.lower``, ``name.upper``, ``name.units`` beside it
give its limits and units). The upload is spooled: a server out of reach loses nothing.
"""

from __future__ import annotations

import subprocess

import pytest


@pytest.hookimpl(trylast=True)  # after pytest's junitxml plugin has written the report
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    report = session.config.option.xmlpath
    if not report:
        return
    done = subprocess.run(["fabguard-station", "upload", report, "--format", "junit"], check=False)
    if done.returncode == 3:  # refused: the run is not on record, so the unit cannot pass the test gate
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif done.returncode not in (0, 4):  # 4: spooled, sent by the next upload or 'spool flush'
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
