"""Schemathesis over the whole OpenAPI document: no 5xx, and every answer is the one the document describes.

The app runs in-process (schemathesis' ASGI transport) on one instance for the module. Each credential
set (an admin token, an auditor token, none) drives every operation; the credentialled runs also carry
an enrolled fixture's client certificate, put into the scope as the ASGI TLS extension the app reads
(``api/tls.py``), the way ``ClientCertH11Protocol`` does under uvicorn. Generation is derandomized with
a few examples per operation, so a CI run is reproducible and stays within seconds.

Each operation's cases come from its schemathesis strategy under Hypothesis' ``@given`` (schemathesis'
own pytest integration, ``from_fixture(...).parametrize()``, fails on pytest 9 with
``'Function' object has no attribute '_nodeid'``), and every operation's failures are reported together.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from fabguard.api.app import create_app
from fabguard.domain.values import OrderId, ProductId, SiteId
from fabguard.service.access import tokens
from fabguard.service.catalog import orders, product_catalog
from fabguard.service.core.instance import Instance
from tests.support import enrolled_fixture_pem, new_instance

MAX_EXAMPLES = 150  # per operation, mode and credential set: ~70 operations, x2 (valid and invalid input) for admin
SETTINGS: dict[str, Any] = {
    "max_examples": MAX_EXAMPLES,
    "derandomize": True,  # the same cases on every run: CI is reproducible
    "database": None,
    "deadline": None,
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
    "suppress_health_check": list(HealthCheck),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# EST bodies are text (base64 DER): send the generated strings as they are.
schemathesis.serializer.alias("application/pkcs10", "text/plain")
# OCSP requests are DER: a generated string is sent as its bytes, and refused as malformedRequest.
schemathesis.serializer.alias("application/ocsp-request", "text/plain")


class WithClientCert:
    """The app, with ``chain`` (PEM certificates, possibly none) as each request's TLS extension.

    Lifespan messages are answered here: the background workers are not part of what is fuzzed.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.chain: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        extensions = dict(scope.get("extensions") or {})
        extensions["tls"] = {"client_cert_chain": list(self.chain)}
        await self.app({**scope, "extensions": extensions}, receive, send)


class Target:
    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.app = WithClientCert(create_app(inst))
        _, self.admin = tokens.create_token(inst, name="fuzz-admin", role="admin", actor="test")
        _, self.auditor = tokens.create_token(inst, name="fuzz-auditor", role="auditor", actor="test")
        product_catalog.create_product(inst, product_id=ProductId("sensor"), name="Sensor v2", actor="test")
        product_catalog.create_site(inst, site_id=SiteId("cm-a"), name="CM A", actor="test")
        orders.create_order(
            inst,
            product_id=ProductId("sensor"),
            site_id=SiteId("cm-a"),
            quota=5,
            actor="test",
            order_id=OrderId("po-1"),
        )
        self.fixture_chain = [enrolled_fixture_pem(inst, "fx-1", "cm-a")]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    inst = new_instance(Path(tmp_path_factory.mktemp("schemathesis")) / "home")
    try:
        yield Target(inst)
    finally:
        inst.close()


@pytest.fixture(scope="module")
def api_schema(target: Target) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "seed": 15,
            "suppress-health-check": ["all"],
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", target.app, config=config)


def _credentials(target: Target, token: str | None) -> Iterator[dict[str, str]]:
    """A bearer token with the fixture's certificate, or nothing at all."""
    target.app.chain = target.fixture_chain if token else []
    try:
        yield {"Authorization": f"Bearer {token}"} if token else {}
    finally:
        target.app.chain = []


@pytest.fixture
def as_admin(target: Target) -> Iterator[dict[str, str]]:
    yield from _credentials(target, target.admin)


@pytest.fixture
def as_auditor(target: Target) -> Iterator[dict[str, str]]:
    yield from _credentials(target, target.auditor)


@pytest.fixture
def anonymous(target: Target) -> Iterator[dict[str, str]]:
    yield from _credentials(target, None)


DEEP = {"/api/v1/units/provision"}
_ANNOTATIONS = {"title", "description", "default", "examples"}


def _constrained(schema: dict[str, Any]) -> bool:
    """Whether some value breaks ``schema`` (a plain optional string takes anything a URL can carry)."""
    options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    return any(set(o) - _ANNOTATIONS != {"type"} or o["type"] != "string" for o in options)


def _negatable(api_schema: Any, operation: Any) -> bool:
    """Whether invalid input exists for ``operation``: a JSON body or a constrained parameter."""
    raw = api_schema.raw_schema["paths"][operation.path][operation.method.lower()]
    if "application/json" in raw.get("requestBody", {}).get("content", {}):
        return True
    return any(_constrained(p.get("schema", {})) for p in raw.get("parameters", []))


def _fuzz(api_schema: Any, headers: dict[str, str], modes: tuple[GenerationMode, ...]) -> None:
    """Every operation in each of ``modes``; the failures of all operations are reported together."""
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path not in DEEP:
            continue
        for mode in modes:
            if mode is GenerationMode.NEGATIVE and not _negatable(api_schema, operation):
                continue

            @settings(**SETTINGS)
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                # A generated Authorization header would replace the credential under test.
                if case.headers:
                    case.headers.pop("Authorization", None)
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                run()
            except (Exception, FailureGroup) as exc:  # FailureGroup: schemathesis' failed checks
                import traceback

                failures.append(f"{operation.label} ({mode.value}): " + "".join(traceback.format_exception(exc))[-6000:])
    assert not failures, "\n\n".join(failures)


# Invalid input with full rights reaches every check behind authentication; with fewer rights or none,
# the refusal comes first, so valid-looking input is what probes those paths.
BOTH = (GenerationMode.NEGATIVE,)
VALID = (GenerationMode.POSITIVE,)


@pytest.mark.slow
def test_admin_gets_documented_answers_and_never_5xx(api_schema: Any, as_admin: dict[str, str]) -> None:
    _fuzz(api_schema, as_admin, BOTH)


@pytest.mark.slow
def test_auditor_gets_documented_answers_and_never_5xx(api_schema: Any, as_auditor: dict[str, str]) -> None:
    _fuzz(api_schema, as_auditor, VALID)


def test_anonymous_caller_gets_documented_answers_and_never_5xx(api_schema: Any, anonymous: dict[str, str]) -> None:
    _fuzz(api_schema, anonymous, VALID)
