"""The dashboard in Debian's Chromium with strict certificate checking (no ``ignore_https_errors``), over a
``fabguard serve`` process that serves the operator's certificate (issue 25, item 2).

Chromium on Linux takes locally added trust anchors from the NSS database in ``$HOME/.pki/nssdb``: the test
makes one in a throwaway HOME with ``certutil`` (Debian's libnss3-tools) holding the operator's root CA as
trusted for TLS servers (``-t C,,``), and starts Chromium with that HOME. A Chromium whose HOME has no such
database refuses the same page with ERR_CERT_AUTHORITY_INVALID, so the trust really comes from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.operator_ca import OperatorCA
from tests.served import free_port, init_instance, serve, stop, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(
        shutil.which("certutil") is None, reason="certutil is not installed (apt-get install libnss3-tools)"
    ),
]


def nss_home(home: Path, *trusted: Path) -> Path:
    """A HOME whose NSS database (what Chromium on Linux reads) trusts ``trusted`` CA certificates for TLS servers."""
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{db}", "-N", "--empty-password"], check=True, capture_output=True)
    for n, ca in enumerate(trusted):
        subprocess.run(
            ["certutil", "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", f"operator-ca-{n}", "-i", str(ca)],
            check=True,
            capture_output=True,
        )
    return home


@contextmanager
def chromium(home: Path) -> Iterator[Any]:
    """A page in a Chromium started with ``home`` as its HOME, checking certificates strictly."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env={**os.environ, "HOME": str(home)}
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})  # ignore_https_errors is False
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def test_chromium_opens_the_dashboard_trusting_only_the_operator_ca(tmp_path: Path) -> None:
    operator = OperatorCA(tmp_path / "operator")
    cert, key, _ = operator.server_certificate("server", hosts=("127.0.0.1",))
    port, home = free_port(), tmp_path / "instance"
    admin = init_instance(
        home, port, "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(operator.root_file)
    )
    url = f"https://127.0.0.1:{port}"
    server = serve(home, tmp_path / "serve.log", port)
    try:
        wait_healthy(url, operator.root_file, server)

        with chromium(nss_home(tmp_path / "trusting", operator.root_file)) as page:
            answer = page.goto(url + "/")
            assert answer is not None and answer.ok
            page.fill("#token", admin)
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("#live.on", timeout=20_000)  # signed in, its event stream open over TLS

        with (
            chromium(nss_home(tmp_path / "not-trusting")) as page,
            pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"),
        ):
            page.goto(url + "/")
    finally:
        stop(server)
