"""A Python client generated from /openapi.json by openapi-python-client builds and makes real calls.

The generator (installed by scripts/setup in ``.venv-client-gen``, apart from the project's venv: it pins
httpx<0.29) runs on the document the server serves, with ``--fail-on-warning``: every operation must come
out (media types it does not know are mapped to bytes by ``scripts/openapi-python-client.yaml``). The
generated package is imported and calls the running server over TLS with a bearer token, and its answers
are the typed models, not dicts.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabguard.service.authority import authorities
from fabguard.service.ledger import merkle_log
from tests.support import World, tested_device

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "scripts" / "openapi-python-client.yaml"

GENERATE_OPTIONS = ("--meta", "none", "--config", str(CONFIG), "--fail-on-warning")

pytestmark = pytest.mark.slow


def _generator() -> str:
    for candidate in (
        os.environ.get("FABGUARD_OPENAPI_PYTHON_CLIENT"),
        str(REPO / ".venv-client-gen" / "bin" / "openapi-python-client"),
        shutil.which("openapi-python-client"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    message = "openapi-python-client is not installed (scripts/setup makes .venv-client-gen)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def client_package(world: World, tmp_path: Path) -> Iterator[Any]:
    """The generated package ``fabguard_client``, imported from ``tmp_path``."""
    with world.admin() as http:
        spec = http.get("/openapi.json").json()
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec))
    out = tmp_path / "fabguard_client"
    done = subprocess.run(
        [_generator(), "generate", "--path", str(document), "--output-path", str(out), *GENERATE_OPTIONS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("fabguard_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "fabguard_client" or m.startswith("fabguard_client.")]:
            del sys.modules[name]


def test_generated_client_signs_and_reads_a_checkpoint(world: World, client_package: Any) -> None:
    take = importlib.import_module("fabguard_client.api.ledger.take_checkpoint")
    newest = importlib.import_module("fabguard_client.api.ledger.ledger_checkpoint")
    list_cas = importlib.import_module("fabguard_client.api.ca.list_cas")
    models = importlib.import_module("fabguard_client.models")
    world.order(quota=2)  # a few ledger entries to sign
    client = client_package.AuthenticatedClient(
        base_url=world.url,
        token=world.admin_token,
        verify_ssl=ssl.create_default_context(cafile=str(world.root_ca)),
    )
    with client:
        signed = take.sync(client=client)
        assert isinstance(signed, models.Checkpoint), signed
        stored = merkle_log.newest_checkpoint(world.inst)
        assert (signed.size, signed.root, signed.note) == (
            stored.size,
            base64.b64encode(stored.root).decode(),
            stored.note,
        )
        assert signed.size > 0
        read = newest.sync(client=client)
        assert isinstance(read, models.Checkpoint)
        assert (read.size, read.root, read.note) == (signed.size, signed.root, signed.note)
        cas = list_cas.sync(client=client)
        assert cas and all(isinstance(c, models.Ca) for c in cas)
        assert [(c.name, c.role, c.state) for c in cas] == [
            (c.name, c.role, c.state) for c in authorities.list_cas(world.inst)
        ]
        # An error is the Error model, with its code.
        anonymous = client_package.Client(
            base_url=world.url, verify_ssl=ssl.create_default_context(cafile=str(world.root_ca))
        )
        with anonymous:
            refused = take.sync(client=anonymous)
        assert isinstance(refused, models.Error) and refused.error.code == "unauthorized", refused


def test_generated_client_reads_an_orders_figures_as_typed_models(world: World, client_package: Any) -> None:
    """A dashboard answer (typed since issue 26 item 10 was finished): nested models, ``yield`` as ``yield_``."""
    stats_order = importlib.import_module("fabguard_client.api.analytics.stats_order")
    models = importlib.import_module("fabguard_client.models")
    order = world.order(quota=7)
    fx = world.fixture("fx-1")
    device = tested_device(fx, "SN-GEN-1")
    fx.provision(order, device.serial, device.csr_pem())
    client = client_package.AuthenticatedClient(
        base_url=world.url,
        token=world.admin_token,
        verify_ssl=ssl.create_default_context(cafile=str(world.root_ca)),
    )
    with client:
        figures = stats_order.sync(order, client=client)
    assert isinstance(figures, models.OrderFigures), figures
    assert isinstance(figures.order, models.Order) and figures.order.id == order
    assert isinstance(figures.burn_down, models.BurnDown)
    assert (figures.burn_down.quota, figures.burn_down.used, figures.burn_down.remaining) == (7, 1, 6)
    assert isinstance(figures.yield_, models.YieldFigures)
    assert (figures.yield_.units_tested, figures.yield_.first_pass) == (1, 1)
