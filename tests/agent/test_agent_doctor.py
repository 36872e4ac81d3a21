"""``fabguard doctor`` on a site agent's home: the agent made by ``agent init`` passes the checks an operator
runs, like an instance ``init`` made (its database the owner's alone; the root and station CA, whose keys
stay at the central server, not taken for keys that fail to open)."""

from __future__ import annotations

from pathlib import Path

from fabguard.service.core.instance import Instance
from fabguard.service.operations import doctor
from tests.agent.conftest import Site
from tests.support import PASSPHRASE


def test_a_site_agent_passes_the_doctors_permission_and_key_checks(site: Site, tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    assert (site.home / "fabguard.db").stat().st_mode & 0o077 == 0
    inst = Instance.open(site.home)
    try:
        findings = doctor.examine(inst, {"FABGUARD_KEY_PASSPHRASE_FILE": str(secret)})
    finally:
        inst.close()
    failed = [f for f in findings if f.status == "failed" and f.check in ("permissions", "keys")]
    assert failed == []
    assert [f.status for f in findings if f.check == "keys"] == ["ok"]
