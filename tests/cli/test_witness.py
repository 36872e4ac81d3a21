"""``fabguard witness``: a CM site cosigns what it checked, refuses a fork of a ledger it saw (two real
ledgers that share a prefix and diverge), online with its token or offline on files; ``audit verify``
requires N cosignatures."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fabguard.cli.main import app
from fabguard.domain.values import SiteId
from fabguard.ledger.cosignature import parse_cosigner_key, valid_cosigners
from fabguard.service.access import tokens
from fabguard.service.catalog import product_catalog
from fabguard.service.core.instance import Instance
from fabguard.service.ledger import merkle_log
from tests.support import SOFTHSM_MODULE, TOKEN, USER_PIN, SoftHsm, World, new_instance

runner = CliRunner()
NAME = "cm-a.example/witness"


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False)
    return result.exit_code, result.output


def grow(inst: Instance, *sites: str) -> None:
    for s in sites:
        product_catalog.create_site(inst, site_id=SiteId(s), name=s, actor="test")


def witness_init(tmp: Path, inst: Instance, *key_args: str | Path, env: dict[str, str] | None = None) -> str:
    tmp.mkdir(exist_ok=True)
    (tmp / "oem.pub").write_text(merkle_log.public_verifier_key(inst) + "\n")
    code, out = run(
        "witness", "init", "--name", NAME, "--log-key", tmp / "oem.pub", "--state", tmp / "w.json", *key_args, env=env
    )
    assert code == 0, out
    return out.strip()


def test_the_witness_cosigns_one_ledger_and_refuses_its_fork_and_the_auditor_counts(tmp_path: Path) -> None:
    a = new_instance(tmp_path / "a")
    grow(a, "cm-a", "cm-b")
    a.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same ledger key and the same first entries
    a, b = Instance.open(tmp_path / "a"), Instance.open(tmp_path / "b")
    try:
        cosigner = witness_init(tmp_path, a, "--key-file", tmp_path / "witness.key.pem")
        state = tmp_path / "w.json"
        assert run("--home", tmp_path / "a", "ledger", "witness-add", "--site", "cm-a", "--key", cosigner)[0] == 0
        grow(a, "cm-honest")  # with the witness's registration: two entries after the shared ones
        grow(b, "cm-forked", "cm-forked-2")

        assert run("--home", tmp_path / "a", "ledger", "cosign-request", "--old", "0", "--out", tmp_path / "ra")[0] == 0
        code, out = run("witness", "cosign", "--state", state, "--request", tmp_path / "ra", "--out", tmp_path / "ca")
        assert code == 0, out
        code, out = run("--home", tmp_path / "a", "ledger", "add-cosignature", tmp_path / "ca")
        assert code == 0 and NAME in out, out
        size = merkle_log.latest_checkpoint(a).size
        saved = state.read_bytes()

        # The fork, at the same size: another root for a size the witness cosigned.
        assert merkle_log.latest_checkpoint(b).size == size
        assert (
            run("--home", tmp_path / "b", "ledger", "cosign-request", "--old", size, "--out", tmp_path / "rb")[0] == 0
        )
        code, out = run("witness", "cosign", "--state", state, "--request", tmp_path / "rb")
        assert code == 1 and "FORK at size" in out and "[witness_fork]" in out and "state is unchanged" in out, out
        # The fork grown past it: its proof from the witness's size does not lead to the root it cosigned.
        grow(b, "cm-f2", "cm-f3")
        assert (
            run("--home", tmp_path / "b", "ledger", "cosign-request", "--old", size, "--out", tmp_path / "rb")[0] == 0
        )
        code, out = run("witness", "cosign", "--state", state, "--request", tmp_path / "rb")
        assert code == 1 and "[witness_proof_invalid]" in out, out
        assert state.read_bytes() == saved

        # The auditor: the export passes with one cosignature required, fails with two.
        assert run("--home", tmp_path / "a", "ledger", "export", tmp_path / "x")[0] == 0
        (tmp_path / "w1.pub").write_text(cosigner + "\n")
        verify = ("audit", "verify", tmp_path / "x", "--key", tmp_path / "oem.pub")
        code, out = run(*verify, "--witness", tmp_path / "w1.pub", "--min-cosignatures", "1")
        assert code == 0 and f"checkpoint of size {size} by 1 of your witnesses" in out, out
        other = witness_init(tmp_path / "other", a, "--key-file", tmp_path / "other.key.pem")
        code, out = run(*verify, "--witness", cosigner, "--witness", other, "--min-cosignatures", "2")
        assert code == 1 and "verification FAILED" in out and "2 are required" in out, out
        code, out = run(*verify, "--witness", cosigner, "--min-cosignatures", "2")
        assert code == 2 and "needs at least 2 distinct --witness keys" in out, out
    finally:
        a.close()
        b.close()


def test_online_the_site_cosigns_with_its_operator_token_and_the_server_serves_it(world: World) -> None:
    inst = world.inst
    tmp = world.tmp / "site"
    tmp.mkdir()
    cosigner = witness_init(tmp, inst, "--key-file", tmp / "witness.key.pem")
    _, operator = tokens.create_token(inst, name="cm-a op", role="operator", actor="test", site_id=SiteId("cm-a"))
    _, other_op = tokens.create_token(inst, name="cm-b op", role="operator", actor="test", site_id=SiteId("cm-b"))
    args = ("witness", "cosign", "--state", tmp / "w.json", "--server", world.url, "--cacert", world.root_ca)

    def checkpoint() -> None:
        """What the server's worker does every checkpoint_seconds: the GET a witness makes signs none."""
        with world.admin() as http:
            assert http.post("/api/v1/ledger/checkpoint").status_code == 200

    checkpoint()
    # Not registered yet: the server refuses, the witness has cosigned all the same (its state moved on).
    code, out = run(*args, env={"FABGUARD_TOKEN": operator})
    assert code == 2 and "[witness_unknown]" in out and "run again to resend" in out, out
    with world.admin() as http:
        r = http.post("/api/v1/ledger/witnesses", json={"site_id": "cm-a", "verifier_key": cosigner})
        assert r.status_code == 201, r.text
    checkpoint()
    # Resent: the log grew by the registration, so the witness checks the proof from the size it kept.
    code, out = run(*args, env={"FABGUARD_TOKEN": operator})
    assert code == 0 and "cosigned" in out, out
    grow(inst, "cm-c")
    checkpoint()
    code, out = run(*args, env={"FABGUARD_TOKEN": operator})
    assert code == 0, out

    ctx = ssl.create_default_context(cafile=str(world.root_ca))
    with httpx.Client(base_url=world.url, verify=ctx, headers={"Authorization": f"Bearer {operator}"}) as http:
        served = http.get("/api/v1/ledger/checkpoint/cosigned").json()
        note = http.get("/api/v1/ledger/checkpoint/cosigned", params={"format": "note"}).text
    key = parse_cosigner_key(cosigner)
    assert served["witnesses"] == [NAME] and served["note"] == note
    assert list(valid_cosigners(note, [key])) == [key.verifier_key]
    line = note.rstrip("\n").split("\n")[-1] + "\n"
    with httpx.Client(base_url=world.url, verify=ctx, headers={"Authorization": f"Bearer {other_op}"}) as http:
        r = http.post("/api/v1/ledger/cosignatures", json={"size": served["size"], "signatures": line})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    stranger = line.replace(NAME, "stranger.example/w")
    with world.admin() as http:
        r = http.post("/api/v1/ledger/cosignatures", json={"size": served["size"], "signatures": stranger})
        assert r.status_code == 403 and r.json()["error"]["code"] == "witness_unknown"
        r = http.post("/api/v1/ledger/cosignatures", json={"size": served["size"], "signatures": "no line\n"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "cosignature_invalid"
        r = http.post("/api/v1/ledger/witnesses", json={"site_id": "cm-b", "verifier_key": "cm-b+00+AQ=="})
        assert r.status_code == 422 and r.json()["error"]["code"] == "witness_key_invalid"
        assert [w["name"] for w in http.get("/api/v1/ledger/witnesses").json()] == [NAME]
    code, out = run(*args, env={"FABGUARD_TOKEN": "fgt_not-a-token"})
    assert code == 2 and "the server refused" in out and "[unauthorized]" in out, out


def test_the_witness_key_can_live_in_a_pkcs11_token(softhsm: SoftHsm, instance: Instance, tmp_path: Path) -> None:
    env = {"FABGUARD_PKCS11_PIN": USER_PIN}
    hsm = ("--pkcs11-module", SOFTHSM_MODULE, "--pkcs11-token", TOKEN, "--pkcs11-label", "witness-cm-a")
    cosigner = witness_init(tmp_path, instance, *hsm, env=env)
    assert run("--home", instance.home, "ledger", "cosign-request", "--old", "0", "--out", tmp_path / "r")[0] == 0
    code, out = run("witness", "cosign", "--state", tmp_path / "w.json", "--request", tmp_path / "r", env=env)
    assert code == 0, out
    key = parse_cosigner_key(cosigner)
    assert list(valid_cosigners(out, [key])) == [key.verifier_key]
    assert "PRIVATE" not in (tmp_path / "w.json").read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--name", "has space"), "no space"),
        (("--name", NAME), "name where the witness key lives"),
    ],
)
def test_witness_init_refuses_bad_input_in_one_line(
    instance: Instance, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    (tmp_path / "oem.pub").write_text(merkle_log.public_verifier_key(instance))
    code, out = run("witness", "init", *args, "--log-key", tmp_path / "oem.pub", "--state", tmp_path / "w.json")
    assert code in (2, 3) and expected in out and "Traceback" not in out, out
    assert not (tmp_path / "w.json").exists()


def test_a_second_cosigning_waits_for_the_first_to_save_its_state(instance: Instance, tmp_path: Path) -> None:
    """Checking against the state and saving the new one are one step (tlog-witness): another ``cosign``
    on the same state waits on its lock, so it can never check against a state about to be replaced."""
    witness_init(tmp_path, instance, "--key-file", tmp_path / "witness.key.pem")
    assert run("--home", instance.home, "ledger", "cosign-request", "--old", "0", "--out", tmp_path / "r")[0] == 0
    state = tmp_path / "w.json"
    cmd = [sys.executable, "-m", "fabguard.cli.main", "witness", "cosign", "--state", str(state)]
    with open(state.with_name(state.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        src = str(Path(__file__).resolve().parents[2] / "src")
        env = {**os.environ, "PYTHONPATH": src}
        proc = subprocess.Popen([*cmd, "--request", str(tmp_path / "r")], stdout=subprocess.PIPE, text=True, env=env)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)
        assert json.loads(state.read_text())["log"]["size"] == 0
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "\u2014 " + NAME in out
    assert json.loads(state.read_text())["log"]["size"] == merkle_log.latest_checkpoint(instance).size
