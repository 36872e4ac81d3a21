"""An export of a real production run verifies offline; every kind of tampering is caught and located."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabguard.domain.errors import FabGuardError
from fabguard.fixture.simulator import LineConfig, ProductionLine
from fabguard.ledger.checkpoint import Checkpoint, open_signed_checkpoint, sign_checkpoint
from fabguard.ledger.merkle import CompactRange, leaf_hash
from fabguard.ledger.verify import AuditFailure, verify_export
from fabguard.pki.keys import read_encrypted_key
from fabguard.service.ledger import merkle_log
from tests.support import PASSPHRASE, World, new_instance


def _home(exported: tuple[Path, str, Path]) -> Path:
    return exported[0].parent / "home"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Path]]:
    """A run of a small line with attacks, checkpoints taken along the way, then an export."""
    tmp = tmp_path_factory.mktemp("audit")
    inst = new_instance(tmp / "home")
    world = World.start(inst, tmp)
    try:
        order = world.order(quota=20)
        creds = [world.credentials(f"fx-{i}") for i in range(2)]
        early = merkle_log.make_checkpoint(inst)
        (tmp / "early.txt").write_text(early.note)
        with ProductionLine(creds, LineConfig(order_id=order, units=25, clones=2, skip_tests=2)) as line:
            line.run()
        merkle_log.make_checkpoint(inst)
        merkle_log.export(inst, tmp / "export")
        yield tmp / "export", merkle_log.public_verifier_key(inst), tmp / "early.txt"
    finally:
        world.stop()
        inst.close()


@pytest.fixture
def copy(exported: tuple[Path, str, Path], tmp_path: Path) -> Path:
    shutil.copytree(exported[0], tmp_path / "export")
    return tmp_path / "export"


def lines(path: Path) -> list[bytes]:
    return (path / "entries.jsonl").read_bytes().splitlines()


def write(path: Path, entries: list[bytes]) -> None:
    (path / "entries.jsonl").write_bytes(b"".join(e + b"\n" for e in entries))


def test_untouched_export_verifies_with_the_kept_key_and_checkpoint(exported: tuple[Path, str, Path]) -> None:
    export, key, early = exported
    report = verify_export(export, verifier=key, trusted_checkpoints=(early,))
    assert report.entries == len(lines(export)) > 50
    assert report.trusted_checked == 1 and report.checkpoints_checked >= 1
    assert report.certificates_checked == 20
    assert not report.key_from_export


def test_flipped_byte_is_caught_and_located(copy: Path, exported: tuple[Path, str, Path]) -> None:
    entries = lines(copy)
    target = len(entries) - 5
    entries[target] = entries[target].replace(b'"kind":"', b'"kind":"X', 1)
    write(copy, entries)
    with pytest.raises(AuditFailure, match=rf"entries \d+\.\.{len(entries) - 1}"):
        verify_export(copy, verifier=exported[1])


def test_byte_flip_that_breaks_the_encoding_names_the_entry(copy: Path, exported: tuple[Path, str, Path]) -> None:
    entries = lines(copy)
    entries[30] = entries[30].replace(b'"v":1', b'"v": 1')
    write(copy, entries)
    with pytest.raises(AuditFailure, match="entry 30: it is not in canonical form"):
        verify_export(copy, verifier=exported[1])


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda e: e[:10] + e[11:], "entry 10: its index field says 11"),
        (lambda e: [*e[:10], e[3], *e[10:]], "entry 10: its index field says 3"),
        (lambda e: [*e[:10], e[11], e[10], *e[12:]], "entry 10: its index field says 11"),
        (lambda e: e[:-3], "the log was truncated"),
    ],
    ids=["deleted", "inserted", "reordered", "truncated"],
)
def test_structural_tampering_is_caught_at_the_first_bad_entry(
    copy: Path, exported: tuple[Path, str, Path], tamper: object, message: str
) -> None:
    write(copy, tamper(lines(copy)))  # type: ignore[operator]
    with pytest.raises(AuditFailure, match=message):
        verify_export(copy, verifier=exported[1])


def _ledger_key(home: Path) -> ed25519.Ed25519PrivateKey:
    key = read_encrypted_key(home / "keys" / "ledger.key.pem", PASSPHRASE.encode())
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key


def _final(copy: Path) -> Checkpoint:
    note = sorted((copy / "checkpoints").glob("*.txt"))[-1].read_text()
    return open_signed_checkpoint(note, (copy / "ledger.pub").read_text().strip())


def test_fork_with_two_validly_signed_trees_of_one_size_is_caught(
    copy: Path, exported: tuple[Path, str, Path], tmp_path: Path
) -> None:
    # Whoever runs the server holds the ledger key and shows this auditor a different tree of the same size.
    final = _final(copy)
    forged = sign_checkpoint(
        Checkpoint(final.origin, final.size, bytes(32)), final.origin, _ledger_key(_home(exported))
    )
    (tmp_path / "seen-elsewhere.txt").write_text(forged)
    with pytest.raises(AuditFailure, match="fork"):
        verify_export(copy, verifier=exported[1], trusted_checkpoints=(tmp_path / "seen-elsewhere.txt",))


def test_rewritten_history_resigned_by_the_operator_fails_against_a_kept_checkpoint(
    copy: Path, exported: tuple[Path, str, Path]
) -> None:
    # Rewrite an early entry, recompute the tree, re-sign every checkpoint: self-consistent, but the
    # checkpoint the auditor saved before the run names the old root for its size.
    key = _ledger_key(_home(exported))
    entries = lines(copy)
    kept = open_signed_checkpoint(exported[2].read_text(), exported[1])
    victim = kept.size - 1
    entries[victim] = entries[victim].replace(b'"at":"2', b'"at":"1', 1)
    assert entries[victim] != lines(copy)[victim]
    write(copy, entries)
    tree = CompactRange()
    roots = {}
    for i, e in enumerate(entries):
        tree.push(leaf_hash(e))
        roots[i + 1] = tree.root()
    for path in (copy / "checkpoints").glob("*.txt"):
        cp = open_signed_checkpoint(path.read_text(), exported[1])
        path.write_text(sign_checkpoint(Checkpoint(cp.origin, cp.size, roots[cp.size]), cp.origin, key))
    verify_export(copy, verifier=exported[1])  # without the kept checkpoint the forgery is consistent
    with pytest.raises(AuditFailure, match="fork"):
        verify_export(copy, verifier=exported[1], trusted_checkpoints=(exported[2],))


def test_checkpoint_signed_by_another_key_is_refused(copy: Path, exported: tuple[Path, str, Path]) -> None:
    final = _final(copy)
    stranger = ed25519.Ed25519PrivateKey.generate()
    path = sorted((copy / "checkpoints").glob("*.txt"))[-1]
    path.write_text(sign_checkpoint(final, final.origin, stranger))
    with pytest.raises(AuditFailure, match="no signature"):
        verify_export(copy, verifier=exported[1])


def test_certificate_missing_from_the_ledger_is_caught(copy: Path, exported: tuple[Path, str, Path]) -> None:
    from fabguard.fixture.device import SimulatedDevice

    issuing_home = _home(exported)
    from cryptography.hazmat.primitives import serialization

    from fabguard.domain.values import Serial
    from fabguard.pki import profiles
    from fabguard.pki.keys import read_encrypted_key as read

    issuer = profiles.Issuer(
        profiles.x509.load_pem_x509_certificate((issuing_home / "ca" / "issuing.pem").read_bytes()),
        read(issuing_home / "keys" / "issuing.key.pem", PASSPHRASE.encode()),
    )
    device = SimulatedDevice("SN-OFFBOOK")
    cert = profiles.idevid_certificate(
        issuer, device.key.public_key(), Serial("SN-OFFBOOK"), "Acme Devices", "sensor", datetime.now(UTC)
    )
    (copy / "certs" / "SN-OFFBOOK.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(AuditFailure, match=r"SN-OFFBOOK\.pem .* was never recorded in the ledger"):
        verify_export(copy, verifier=exported[1])


def test_audit_verify_command_needs_no_server_and_names_the_problem(
    copy: Path, exported: tuple[Path, str, Path], tmp_path: Path
) -> None:
    (tmp_path / "key.pub").write_text(exported[1])
    fabguard = Path(sys.executable).parent / "fabguard"
    ok = subprocess.run(
        [fabguard, "audit", "verify", copy, "--key", tmp_path / "key.pub"], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and "verified" in ok.stdout, ok.stdout + ok.stderr
    write(copy, lines(copy)[:-1])
    bad = subprocess.run(
        [fabguard, "audit", "verify", copy, "--key", tmp_path / "key.pub"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1 and "truncated" in bad.stderr and "Traceback" not in bad.stderr


def test_verifier_module_imports_nothing_from_the_server_side() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'fastapi','sqlalchemy','alembic','uvicorn','psycopg','starlette','httpx'}"
        " or name.startswith(('fabguard.service','fabguard.store','fabguard.api')):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import fabguard.ledger.verify\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_an_export_that_does_not_verify_fails_with_the_audit_failed_code(
    copy: Path, exported: tuple[Path, str, Path]
) -> None:
    write(copy, lines(copy)[:-1])
    with pytest.raises(AuditFailure, match="truncated") as caught:
        verify_export(copy, verifier=exported[1])
    assert isinstance(caught.value, FabGuardError)
    assert (caught.value.code, caught.value.status) == ("audit_failed", 422)


def test_an_unparseable_ca_certificate_in_the_export_fails_verification(
    copy: Path, exported: tuple[Path, str, Path]
) -> None:
    issuing = sorted((copy / "ca").glob("issuing*.pem"))[0]
    issuing.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(AuditFailure, match=rf"the issuing CA certificate {issuing.name} cannot be parsed"):
        verify_export(copy, verifier=exported[1])


def test_a_root_ca_you_pass_that_is_not_a_certificate_is_an_input_error_not_a_failed_audit(
    copy: Path, exported: tuple[Path, str, Path], tmp_path: Path
) -> None:
    (tmp_path / "root.pem").write_text("not a certificate")
    with pytest.raises(FabGuardError, match="is not a PEM certificate") as caught:
        verify_export(copy, verifier=exported[1], root_ca=tmp_path / "root.pem")
    assert not isinstance(caught.value, AuditFailure) and caught.value.code == "invalid_request"
    (tmp_path / "key.pub").write_text(exported[1])
    fabguard = Path(sys.executable).parent / "fabguard"
    args = [fabguard, "audit", "verify", copy, "--key", tmp_path / "key.pub", "--root", tmp_path / "root.pem"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().startswith("error: ") and "[invalid_request]" in done.stderr, done.stderr


# ------------------------------------------------------------------ the certificate files and the manifest
def _certs(copy: Path) -> list[Path]:
    return sorted((copy / "certs").glob("*.pem"))


def test_the_manifest_maps_each_certificate_file_to_its_unit(exported: tuple[Path, str, Path]) -> None:
    export = exported[0]
    manifest = json.loads((export / "manifest.json").read_text())
    files = manifest["certificate_files"]
    assert len(files) == manifest["certificates"] == len(_certs(export)) == 20
    for name, unit in files.items():
        assert name == f"certs/{unit['serial']}.pem" and unit["order_id"]


def test_a_missing_certificate_file_fails_and_is_named(copy: Path, exported: tuple[Path, str, Path]) -> None:
    gone = _certs(copy)[3]
    gone.unlink()
    with pytest.raises(AuditFailure, match=rf"certs/{gone.name} is missing"):
        verify_export(copy, verifier=exported[1])


def test_all_certificate_files_removed_fails(copy: Path, exported: tuple[Path, str, Path]) -> None:
    shutil.rmtree(copy / "certs")
    with pytest.raises(AuditFailure, match=r"certs/.* is missing"):
        verify_export(copy, verifier=exported[1])


def test_an_extra_copy_of_a_certificate_fails_and_is_named(copy: Path, exported: tuple[Path, str, Path]) -> None:
    first = _certs(copy)[0]
    shutil.copyfile(first, copy / "certs" / "SN-EXTRA.pem")
    with pytest.raises(AuditFailure, match=rf"certs/SN-EXTRA\.pem .*{first.stem}"):
        verify_export(copy, verifier=exported[1])


def test_a_file_in_a_folder_under_certs_is_extra(copy: Path, exported: tuple[Path, str, Path]) -> None:
    (copy / "certs" / "SN").mkdir()
    shutil.copyfile(_certs(copy)[0], copy / "certs" / "SN" / "77.pem")
    with pytest.raises(AuditFailure, match=r"certs/SN"):
        verify_export(copy, verifier=exported[1])


def test_a_certificate_duplicated_over_another_units_file_fails(copy: Path, exported: tuple[Path, str, Path]) -> None:
    a, b = _certs(copy)[:2]
    shutil.copyfile(a, b)
    with pytest.raises(AuditFailure, match=rf"certs/{b.name} holds the certificate of unit {a.stem}"):
        verify_export(copy, verifier=exported[1])


def test_two_swapped_certificate_files_fail(copy: Path, exported: tuple[Path, str, Path]) -> None:
    a, b = _certs(copy)[4:6]
    pem_a, pem_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(pem_b)
    b.write_bytes(pem_a)
    with pytest.raises(AuditFailure, match=rf"certs/{a.name} holds the certificate of unit {b.stem}"):
        verify_export(copy, verifier=exported[1])


@pytest.mark.parametrize(
    ("field", "change", "message"),
    [
        ("entries", lambda v: v + 1, r"manifest\.json says \d+ entries"),
        ("tree_size", lambda v: v - 1, r"manifest\.json says a tree of \d+"),
        ("checkpoints", lambda v: v + 2, r"manifest\.json says \d+ checkpoints"),
        ("certificates", lambda v: v - 1, r"manifest\.json says 19 certificates"),
        ("certificate_files", lambda v: dict(list(v.items())[1:]), r"manifest\.json maps"),
    ],
)
def test_a_manifest_whose_figures_are_not_what_was_verified_fails(
    copy: Path, exported: tuple[Path, str, Path], field: str, change: Callable[[Any], Any], message: str
) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest[field] = change(manifest[field])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AuditFailure, match=message):
        verify_export(copy, verifier=exported[1])


def test_a_missing_manifest_fails(copy: Path, exported: tuple[Path, str, Path]) -> None:
    (copy / "manifest.json").unlink()
    with pytest.raises(AuditFailure, match=r"manifest\.json"):
        verify_export(copy, verifier=exported[1])


def test_audit_verify_without_a_key_proves_nothing_and_exits_non_zero(
    exported: tuple[Path, str, Path], tmp_path: Path
) -> None:
    """As 'field verify --export' does: an export checked with its own key proves nothing, so it is no success."""
    fabguard = Path(sys.executable).parent / "fabguard"
    done = subprocess.run([fabguard, "audit", "verify", exported[0]], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "verified" not in done.stdout, done.stdout + done.stderr
    assert "--key" in done.stderr and "proves nothing" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ the same checks, kept on disk (session 11)
def test_an_altered_certificate_file_fails_and_is_named(copy: Path, exported: tuple[Path, str, Path]) -> None:
    """One character of a certificate's signature changed: it still parses, but no entry issued it."""
    target = _certs(copy)[7]
    lines_ = target.read_text().splitlines()
    last = lines_[-2]  # the end of the base64 body: the signature's bytes
    lines_[-2] = last[:-6] + ("A" if last[-6] != "A" else "B") + last[-5:]
    target.write_text("\n".join(lines_) + "\n")
    with pytest.raises(AuditFailure, match=rf"certificate certs/{target.name} \(SHA-256 .*\) was never recorded"):
        verify_export(copy, verifier=exported[1])


def test_a_certificate_file_that_is_not_a_certificate_fails_and_is_named(
    copy: Path, exported: tuple[Path, str, Path]
) -> None:
    target = _certs(copy)[2]
    target.write_text(target.read_text()[:200])
    with pytest.raises(AuditFailure, match=rf"certificate {target.name} cannot be parsed"):
        verify_export(copy, verifier=exported[1])


def test_an_extra_file_that_is_not_pem_is_named_before_anything_else(
    copy: Path, exported: tuple[Path, str, Path]
) -> None:
    _certs(copy)[0].unlink()  # a missing file too: the added one is named first, as before
    (copy / "certs" / "notes.txt").write_text("x")
    with pytest.raises(AuditFailure, match=r"certs/notes\.txt is not a certificate file of this export"):
        verify_export(copy, verifier=exported[1])


def _manifest_text(copy: Path) -> str:
    return (copy / "manifest.json").read_text()


def test_a_manifest_whose_map_is_in_another_order_or_formatting_verifies(
    copy: Path, exported: tuple[Path, str, Path]
) -> None:
    manifest = json.loads(_manifest_text(copy))
    manifest["certificate_files"] = dict(reversed(list(manifest["certificate_files"].items())))
    (copy / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")))
    assert verify_export(copy, verifier=exported[1]).certificates_checked == 20


def test_a_file_named_twice_in_the_manifests_map_counts_as_json_says_its_last(
    copy: Path, exported: tuple[Path, str, Path]
) -> None:
    """A name given twice: JSON keeps the last, so a wrong first one is harmless and a wrong last one fails."""
    text = _manifest_text(copy)
    name = _certs(copy)[0].name
    wrong = f'"certs/{name}": {{"serial": "SN-OTHER", "order_id": "po-x"}}'
    right_at = text.index(f'"certs/{name}"')
    (copy / "manifest.json").write_text(text[:right_at] + wrong + ", " + text[right_at:])
    verify_export(copy, verifier=exported[1])
    value_end = text.index("}", right_at) + 1
    (copy / "manifest.json").write_text(text[:value_end] + ", " + wrong + text[value_end:])
    with pytest.raises(AuditFailure, match=r"manifest\.json maps"):
        verify_export(copy, verifier=exported[1])


@pytest.mark.parametrize(
    "change",
    [
        lambda files: {**files, "certs/SN-EXTRA.pem": {"serial": "SN-EXTRA", "order_id": "po"}},
        lambda files: {k: {**v, "note": "x"} for k, v in files.items()},
        lambda files: {k: {"serial": v["serial"], "order_id": 7} for k, v in files.items()},
        lambda files: list(files),
        lambda files: None,
    ],
    ids=["extra name", "extra field", "not a string", "a list", "null"],
)
def test_a_manifest_map_that_is_not_the_units_files_fails(
    copy: Path, exported: tuple[Path, str, Path], change: Callable[[Any], Any]
) -> None:
    manifest = json.loads(_manifest_text(copy))
    manifest["certificate_files"] = change(manifest["certificate_files"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AuditFailure, match=r"manifest\.json maps"):
        verify_export(copy, verifier=exported[1])


@pytest.mark.parametrize(
    ("text", "message"),
    [("[1, 2]", "is not a JSON object"), ('{"entries": 1', "is not JSON"), ('{"entries": 1} {}', "is not JSON")],
)
def test_a_manifest_that_is_not_a_json_object_fails(
    copy: Path, exported: tuple[Path, str, Path], text: str, message: str
) -> None:
    (copy / "manifest.json").write_text(text)
    with pytest.raises(AuditFailure, match=rf"manifest\.json {message}"):
        verify_export(copy, verifier=exported[1])


def test_the_verifier_leaves_no_file_behind(
    copy: Path, exported: tuple[Path, str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its on-disk index lives in a temporary folder of its own, removed whether the export verifies or not."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)
    verify_export(copy, verifier=exported[1])
    _certs(copy)[0].unlink()
    with pytest.raises(AuditFailure):
        verify_export(copy, verifier=exported[1])
    assert list(scratch.iterdir()) == []


def test_a_file_whose_name_is_not_utf8_is_named_as_added(copy: Path, exported: tuple[Path, str, Path]) -> None:
    shutil.copyfile(_certs(copy)[0], os.fsencode(copy / "certs") + b"/SN\xff.pem")
    with pytest.raises(AuditFailure, match=re.escape("certs/SN\\udcff.pem is not a certificate file")):
        verify_export(copy, verifier=exported[1])


def test_a_manifest_map_naming_a_file_with_an_unpaired_surrogate_fails(
    copy: Path, exported: tuple[Path, str, Path]
) -> None:
    text = _manifest_text(copy)
    at = text.index('"certificate_files": {') + len('"certificate_files": {')
    odd = '"certs/SN\\ud800.pem": {"serial": "SN\\ud800", "order_id": "po"}, '
    (copy / "manifest.json").write_text(text[:at] + odd + text[at:])
    with pytest.raises(AuditFailure, match=r"manifest\.json maps"):
        verify_export(copy, verifier=exported[1])
