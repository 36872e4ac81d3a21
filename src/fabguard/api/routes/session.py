"""The dashboard's sign-in: an API token posted once becomes a browser session held in an HttpOnly,
Secure, SameSite=Strict cookie (``service/access/sessions``); signing out ends it, and so does the
token's revocation or expiry. Changes through a session must carry the page's own ``Origin``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from fabguard.api.deps import Inst, SiteReader, same_origin
from fabguard.api.responses.session import SignedIn, SignedOut, WhoAmI
from fabguard.service.access import sessions, tokens

router = APIRouter(tags=["session"])


def _who(p: tokens.Principal) -> dict[str, Any]:
    return {
        "token_id": p.id,
        "name": p.person_name or p.name,
        "role": p.role.value,
        "site_id": p.site_id,
        "token_expires_at": p.expires_at.isoformat() if p.expires_at else None,
    }


@router.post("/api/v1/session", response_model=SignedIn)
def sign_in(
    inst: Inst,
    request: Request,
    response: Response,
    token: Annotated[str, Body(embed=True, min_length=1, max_length=100, description="An API token, fgt_...")],
) -> dict[str, Any]:
    """Open a browser session for the token's holder: the answer sets the session cookie (HttpOnly,
    Secure, SameSite=Strict) and says who is signed in. It must come from the dashboard's own page."""
    same_origin(request)
    secret, p, ends = sessions.open_session(
        inst, token, route=request.url.path, anonymous=request.app.state.anonymous_refusal_records
    )
    response.set_cookie(
        sessions.COOKIE,
        secret,
        max_age=max(1, int((ends - inst.clock()).total_seconds())),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return {**_who(p), "session_expires_at": ends.isoformat()}


@router.get("/api/v1/session", response_model=WhoAmI)
def who_am_i(p: SiteReader) -> dict[str, Any]:
    """Who the browser session (or bearer token) is: its role and, for an operator, its site (the
    dashboard's readers and operators; other roles are 403)."""
    return _who(p)


@router.delete("/api/v1/session", response_model=SignedOut)
def sign_out(inst: Inst, request: Request, response: Response) -> dict[str, bool]:
    """End the browser session and clear its cookie (from the dashboard's own page)."""
    same_origin(request)
    cookie = request.cookies.get(sessions.COOKIE)
    ended = sessions.end_session(inst, cookie) if cookie else False
    response.delete_cookie(sessions.COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return {"ended": ended}
