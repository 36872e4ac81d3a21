"""Response bodies (they document the API's answers in /openapi.json, so a generated client gets typed results).

Each model says field for field what a route already returns (the service's ``to_dict()``); a route names it
as its ``response_model``. ``extra="forbid"``: an answer with a field the model does not know fails response
validation (a 500 in tests), so a model cannot silently drop a field. Times are RFC 3339 strings, as sent.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


__all__ = ["Out"]
