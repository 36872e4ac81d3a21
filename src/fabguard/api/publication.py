"""The plain-HTTP publication app: CRLs, CA certificates and OCSP only (``fabguard serve --http-port``).

Relying parties fetch what certificates name in CRL Distribution Points and Authority Information
Access over plain HTTP (RFC 5280 4.2.1.13, 4.2.2.1, RFC 6960 A.1: an HTTPS URL there would need a
certificate check that itself needs the CRL or OCSP). Everything else is 404 here: no API, no dashboard, no documents.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from fabguard import __version__
from fabguard.api.errors import BodyLimit, install_error_handlers
from fabguard.api.routes import publication
from fabguard.service.core.instance import Instance

# The one body here is an OCSP request POSTed: about a hundred bytes, a few kilobytes if signed.
MAX_BODY_BYTES = 8 * 1024


def create_publication_app(inst: Instance) -> Any:
    """The ASGI app of the plain-HTTP listener, over ``inst``."""
    app = FastAPI(title="FabGuard publication", version=__version__, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.instance = inst
    install_error_handlers(app)
    app.include_router(publication.router)
    limits = inst.limits
    return BodyLimit(
        app, MAX_BODY_BYTES, read_seconds=limits.body_read_seconds, max_header_bytes=limits.max_header_bytes
    )
