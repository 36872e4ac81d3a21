"""``fabguard unit list``: the provisioned units an operator looks for (the README names it); ``unit find``
and ``unit show``: a unit back from the field, found by what it shows, and its story."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from fabguard.cli.common import state
from fabguard.cli.main import app
from fabguard.service.authority import revocation
from tests.cli.test_cli import fg, runner
from tests.support import World, tested_device


def test_unit_list_shows_an_orders_units_with_their_state(world: World) -> None:
    first, second = world.order(quota=3), world.order(quota=3)
    fx = world.fixture("fx-1")
    for order, serial in ((first, "SN-L1"), (first, "SN-L2"), (second, "SN-L3")):
        fx.provision(order, serial, tested_device(fx, serial).csr_pem())
    revocation.revoke_unit(world.inst, "SN-L2", reason_code="key_compromise", note="leaked", actor="test")
    code, out = fg(world.inst.home, "unit", "list", "--order", first)
    assert code == 0, out
    assert "SN-L1" in out and "SN-L2" in out and "SN-L3" not in out
    assert "revoked (key_compromise)" in out and "2 units" in out
    code, out = fg(world.inst.home, "unit", "list", "--limit", "1")
    assert code == 0 and "SN-L3" in out and "SN-L1" not in out and "raise --limit" in out, out
    code, out = fg(world.inst.home, "unit", "list", "--limit", "0")
    assert code == 3 and "limit must be" in out and "Traceback" not in out, out


def test_unit_find_and_show_work_from_what_a_returned_unit_shows_here_and_through_the_server(
    world: World, tmp_path: Path
) -> None:
    """Operations gets a unit back from the field: its certificate's fingerprint (as openssl prints it) finds
    it, 'unit show' tells its story in a few lines (and all of it as JSON, or a PDF), on the instance
    directory and through --server alike; a serial that names nothing is a one-line refusal."""
    order, fx = world.order(quota=3), world.fixture("fx-1")
    device = tested_device(fx, "SN-F1")
    pem = fx.provision(order, device.serial, device.csr_pem()).certificate_pem
    tested_device(fx, "SN-F2")
    sha = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex().upper()
    printed = ":".join(sha[i : i + 2] for i in range(0, 64, 2))  # openssl x509 -fingerprint -sha256
    remote = ["--server", world.url, "--ca", str(world.root_ca)]

    def run(*args: str, server: bool = False) -> tuple[int, str]:
        if not server:
            return fg(world.inst.home, *args)
        try:
            result = runner.invoke(app, [*remote, *args], env={"COLUMNS": "200", "FABGUARD_TOKEN": world.admin_token})
        finally:
            state.server = state.ca = None
        return result.exit_code, " ".join(result.output.split())

    for server in (False, True):
        assert run("unit", "find", printed, server=server) == (0, "SN-F1")
        assert run("unit", "find", "SN-F", server=server) == (0, "SN-F1 SN-F2")
        code, out = run("unit", "find", "ZZ-NONE", server=server)
        assert code == 0 and "No unit starts with 'ZZ-NONE'" in out, out
        code, out = run("unit", "show", "SN-F1", server=server)
        assert code == 0, out
        assert f"order {order} at site cm-a, made by fixture fx-1" in out, out
        assert f"SHA-256 {sha.lower()}" in out and "active" in out, out
        assert "Test records: 1; newest PASS" in out and "Decisions: 1; unit.provisioned 1" in out, out
        pdf = tmp_path / f"{server}.pdf"
        code, out = run("unit", "show", "SN-F1", "--json", "--pdf", str(pdf), server=server)
        shown = json.loads(out)
        assert (
            code == 0 and shown["serial"] == "SN-F1" and shown["units"][0]["certificate"]["pem"].strip() == pem.strip()
        )
        assert pdf.read_bytes().startswith(b"%PDF")
        code, out = run("unit", "show", "SN-NOPE", server=server)
        assert code == 3 and "[unit_not_found]" in out and "Traceback" not in out, out
