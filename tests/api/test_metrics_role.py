"""A ``metrics`` token (docs/roles.md): ``GET /metrics`` and the public routes, 403 on every other token route.

Like ``field``, the role has no column in the table (a Prometheus server holds it); this walks every
route of the table as a metrics token instead, on the role matrix's instance.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fabguard.service.access import tokens
from tests.api.test_role_matrix import Caller, Matrix, matrix, narrow_role_mistakes, role_table

__all__ = ["matrix"]  # the module-scoped world of the role matrix, built again for this module

METRICS_ROUTES = {("GET", "/metrics")}


def test_a_metrics_token_passes_only_metrics_and_the_public_routes(matrix: Matrix) -> None:
    _, secret = tokens.create_token(
        matrix.inst, name="prometheus", role="metrics", actor="test", expires_in=timedelta(days=1500)
    )
    caller = Caller(bearer=secret)

    assert ("GET", "/metrics") in role_table()
    assert asyncio.run(narrow_role_mistakes(matrix.app, caller, METRICS_ROUTES, "metrics")) == []
