"""The walk's writes (tests/test_walk_across_features.py): every answer to a POST, PUT, PATCH or DELETE the
world-building made, and one refused call of every write route, against what /openapi.json publishes for that
route and status (an error answer against ``Error``, the ``default`` answer of every operation).

A write whose answer drifts from its model is invisible to the GET walk: the object it returns is often built
apart from the one a GET lists (an act's result, a pending approval, a refusal kept under an idempotency key).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema

WRITES = ("post", "put", "patch", "delete")
# An id no row has, for each path parameter (numbers where the route parses one).
NO_SUCH = {"change_id": "999999", "approval_id": "999999", "generation": "999", "alert_id": "none.0000000000000000"}


def recording(client: httpx.Client, answers: list[httpx.Response]) -> httpx.Client:
    """``client``, keeping each answer to a write it sends (its body read) in ``answers``."""

    def keep(answer: httpx.Response) -> None:
        if answer.request.method.lower() in WRITES:
            answer.read()
            answers.append(answer)

    client.event_hooks["response"] = [*client.event_hooks["response"], keep]
    return client


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(template)) + "$")


def template_of(spec: dict[str, Any], method: str, path: str) -> str | None:
    """The route of /openapi.json that ``method path`` is a call of: a literal path before a parameter's."""
    found = [t for t, ops in spec["paths"].items() if method in ops and _pattern(t).match(path)]
    return min(found, key=lambda t: (t.count("{"), -len(t)), default=None)


def checked(spec: dict[str, Any], answer: httpx.Response) -> str | None:
    """What is wrong with a write's ``answer`` (None: nothing): a 5xx, a status its route does not document
    below 400, a JSON body that does not fit the schema published for its status (or the ``default`` one)."""
    method, path = answer.request.method.lower(), answer.request.url.path
    where = f"{method.upper()} {answer.request.url.raw_path.decode()} -> {answer.status_code}"
    template = template_of(spec, method, path)
    if template is None:
        return f"{where}: no route of /openapi.json"
    if answer.status_code >= 500:
        return f"{where}: {answer.text[:300]}"
    responses = spec["paths"][template][method]["responses"]
    documented = responses.get(str(answer.status_code))
    if documented is None and answer.status_code < 400:
        return f"{where}: status not in /openapi.json ({sorted(responses)})"
    documented = documented or responses["default"]
    if answer.status_code == 204:  # RFC 9110 15.3.5: no content, so no type of it either
        if answer.content or "content-type" in answer.headers:
            return f"{where}: a body {answer.content[:80]!r} of type {answer.headers.get('content-type')}"
        return None
    kind = answer.headers.get("content-type", "").split(";")[0]
    if kind != "application/json":
        content = documented.get("content", {})
        if answer.content and content and not any(k.split(";")[0] == kind for k in content):
            return f"{where}: {kind} is not among {sorted(content)}"
        return None
    return fits(spec, documented, answer, where)


def fits(spec: dict[str, Any], documented: dict[str, Any], answer: httpx.Response, where: str) -> str | None:
    """What is wrong with ``answer``'s JSON body against the schema of ``documented`` (an answer of one route
    and status in ``spec``), ``where`` naming the call (None: nothing)."""
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return f"{where}: a JSON answer, no JSON schema in /openapi.json"
    try:
        jsonschema.validate(answer.json(), {**schema, "components": spec["components"]})
    except jsonschema.ValidationError as wrong:
        return f"{where}: does not fit its schema at {list(wrong.absolute_path)}: {wrong.message[:300]}"
    return None


def _takes_json(operation: dict[str, Any]) -> bool:
    return "application/json" in operation.get("requestBody", {}).get("content", {})


def refused_calls(spec: dict[str, Any], values: dict[str, list[str]]) -> list[tuple[str, str, Any]]:
    """One call of every write route that must be refused, changing nothing: (method, path, JSON body or
    None). A route with a JSON body is called with the world's first real ids and a body of the wrong type
    (a list); one without, with ids no row has. A route with neither would act: left out."""
    calls: list[tuple[str, str, Any]] = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in WRITES:
                continue
            names = re.findall(r"{(\w+)}", template)
            path = template
            for name in names:
                real = (values.get(name) or [None])[0] if _takes_json(operation) else None
                path = path.replace("{" + name + "}", real or NO_SUCH.get(name, "none-such"))
            if _takes_json(operation):
                calls.append((method, path, []))
            elif names:
                calls.append((method, path, None))
    return calls


def refusals(values: dict[str, list[str]]) -> list[tuple[str, str, Any]]:
    """Well-formed calls the world refuses (not found, a conflict with its state, a rule): their answers
    are the service's own refusals, not the parser's."""
    order, serial = values["order_id"][0], values["serial"][1]  # SN-A2, revoked
    approved = values["approval_id"][0]
    return [
        ("post", "/api/v1/orders", {"product_id": "none-such", "site_id": "cm-a", "quota": 1}),
        ("post", f"/api/v1/units/{serial}/revoke", {"reason": "key_compromise", "note": "again"}),
        ("post", f"/api/v1/approvals/{approved}/approve", None),
        ("post", f"/api/v1/approvals/{approved}/reject", None),
        ("post", "/api/v1/fixtures/fx-b1/revoke", {"reason": "again"}),
        ("post", "/api/v1/cas/none-such/revoke", {"note": "none"}),
        ("post", "/api/v1/cas/none-such/rotate", {"new_name": "none-such-2"}),
        ("put", "/api/v1/products/bulb/identities", {"matter": {"vendor_id": 0xFFF2, "product_id": 0x8000}}),
        ("post", f"/api/v1/orders/{order}/quota-changes", {"quota": 0, "reason": "none"}),
        ("post", f"/api/v1/orders/{order}/state", {"state": "none"}),
        ("post", "/api/v1/units/SN-A1/licences", {"features": []}),
        ("post", "/api/v1/firmware/releases/none-such/attach", {"order_id": order}),
        ("post", "/api/v1/people/none-such/grant", {"role": "approver"}),
        ("post", "/api/v1/tokens", {"person": "none-such", "role": "approver"}),
        ("post", "/api/v1/handoff/aws", {"order_id": "none-such"}),
        ("put", "/api/v1/orders/none-such/royalty-rate", {"amount": "1", "currency": "EUR"}),
        ("post", "/api/v1/enroll", {"token": "none-such", "csr": "none"}),
        ("post", "/api/v1/session", {"token": "none-such"}),
    ]


def refused_answers(client: httpx.Client, spec: dict[str, Any], values: dict[str, list[str]]) -> list[str]:
    """Make each of ``refused_calls``: what is wrong (an answer below 400 is wrong too: the call acted)."""
    problems: list[str] = []
    for method, path, body in [*refused_calls(spec, values), *refusals(values)]:
        sent = {"json": body} if body is not None else {}
        answer = client.request(method.upper(), path, **sent)
        if answer.status_code < 400:
            problems.append(f"{method.upper()} {path} {body!r}: {answer.status_code}, not refused: {answer.text[:200]}")
        elif (problem := checked(spec, answer)) is not None:
            problems.append(problem)
    return problems
