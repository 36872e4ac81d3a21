"""A mutated ledger export (any file, any bytes flipped, cut or inserted) fails with AuditFailure, never another error."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabguard.domain.values import FixtureId, OrderId, ProductId, SiteId
from fabguard.ledger.verify import AuditFailure, verify_export
from fabguard.service.catalog import fixtures, orders, product_catalog
from fabguard.service.ledger import merkle_log
from tests.hypothesis_profiles import examples
from tests.support import new_instance

PROPERTY = settings(
    max_examples=examples(120), derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A small export: a few events, two checkpoints, the CA certificates."""
    tmp = tmp_path_factory.mktemp("export-props")
    inst = new_instance(tmp / "home")
    try:
        product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor", actor="test")
        product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
        merkle_log.make_checkpoint(inst)
        orders.create_order(
            inst,
            product_id=ProductId("sensor"),
            site_id=SiteId("cm-a"),
            quota=3,
            actor="test",
            order_id=OrderId("po-1"),
        )
        fixtures.create_fixture(inst, fixture_id=FixtureId("fx-1"), site_id=SiteId("cm-a"), actor="test")
        merkle_log.make_checkpoint(inst)
        merkle_log.export(inst, tmp / "export")
        yield tmp / "export", merkle_log.public_verifier_key(inst)
    finally:
        inst.close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_untouched_export_verifies(export: tuple[Path, str]) -> None:
    directory, key = export
    assert verify_export(directory, verifier=key, root_ca=directory / "ca" / "root.pem").entries >= 4
    assert {"entries.jsonl", "ledger.pub"} <= set(_files(directory))


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, int, bytes]]:
    """(kind, position, length, bytes) edits for a file of ``size`` bytes."""
    return [
        (
            draw(st.sampled_from(["flip", "cut", "insert", "delete", "empty"])),
            draw(st.integers(0, max(size - 1, 0))),
            draw(st.integers(1, 16)),
            draw(st.binary(min_size=1, max_size=16) | st.sampled_from([b"\n", b"{", b'"', b"\xff", b"0"])),
        )
        for _ in range(draw(st.integers(1, 3)))
    ]


def _mutate(data: bytes, edits: list[tuple[str, int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, at, length, chunk in edits:
        at = min(at, max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[at] ^= chunk[0] or 1
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = chunk
        elif kind == "delete":
            del out[at : at + length]
        elif kind == "empty":
            out.clear()
    return bytes(out)


@PROPERTY
@given(st.data(), st.booleans())
def test_a_mutated_export_fails_with_audit_failure_only(
    export: tuple[Path, str], data: st.DataObject, key_from_export: bool
) -> None:
    directory, key = export
    files = _files(directory)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "export"
        shutil.copytree(directory, copy)
        name = data.draw(st.sampled_from(files), label="file")
        original = (copy / name).read_bytes()
        mutated = _mutate(original, data.draw(mutations(len(original)), label="edits"))
        (copy / name).write_bytes(mutated)
        try:
            verify_export(copy, verifier=None if key_from_export else key, root_ca=directory / "ca" / "root.pem")
        except AuditFailure:
            return
        # Accepted: only an edit that changes nothing verified, or one in a file the check does not read.
        assert mutated == original or not name.startswith(("entries", "checkpoints")), name
