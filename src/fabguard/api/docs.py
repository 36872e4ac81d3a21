"""``/docs``: Swagger UI from assets the server ships (web/static/vendor/swagger), so it works offline."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter()

SWAGGER = "/static/vendor/swagger"


@router.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    """The interactive API reference; no CDN, no validator badge fetched from elsewhere."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="FabGuard API",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )


__all__ = ["router"]
