"""A ``field`` token (docs/roles.md): the field routes and the public ones, 403 on every other token route.

The role has no column in the table (third parties hold it); this walks every route of the table as a
field token instead, on the role matrix's instance.
"""

from __future__ import annotations

import asyncio

from fabguard.service.access import tokens
from tests.api.test_role_matrix import Caller, Matrix, matrix, narrow_role_mistakes

__all__ = ["matrix"]  # the module-scoped world of the role matrix, built again for this module

FIELD_ROUTES = {
    ("POST", "/api/v1/field/challenge"),
    ("POST", "/api/v1/field/verify"),
    ("POST", "/api/v1/field/challenges"),
    ("POST", "/api/v1/field/verify-batch"),
}


def test_a_field_token_passes_only_the_field_routes_and_the_public_ones(matrix: Matrix) -> None:
    _, secret = tokens.create_token(matrix.inst, name="support-desk", role="field", actor="test")
    caller = Caller(bearer=secret)

    assert asyncio.run(narrow_role_mistakes(matrix.app, caller, FIELD_ROUTES, "field")) == []
