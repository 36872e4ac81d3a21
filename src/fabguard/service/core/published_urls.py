"""The URLs an instance publishes (its HTTPS API, its CRLs, its CA certificates): checked when they are set,
and compared with where a server really listens."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fabguard.domain.errors import InvalidRequest

DEFAULT_PORTS = {"http": 80, "https": 443}
WILDCARDS = {"", "0.0.0.0", "::"}  # noqa: S104 (a listening address compared, not bound)


def url_host(host: str) -> str:
    """A host name or IP address as it stands in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def published_url(url: str, what: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """``url`` checked as a base URL that certificates or clients name: scheme, host, optional port and
    path, no query, fragment or credentials; without its trailing slash."""
    text = url.strip()
    shown = text[:200]
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidRequest(f"the {what} {shown!r} is not a URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        forms = " or ".join(f"{s}://HOST[:PORT]" for s in schemes)
        raise InvalidRequest(f"the {what} must be {forms}, not {shown!r}")
    if parts.query or parts.fragment or parts.username or parts.password or port == 0:
        raise InvalidRequest(f"the {what} {shown!r} may not carry a query, a fragment, credentials or port 0")
    return text.rstrip("/")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _reaches(url: str, scheme: str, host: str, port: int) -> bool:
    """Whether ``url`` names a listener of ``scheme`` at ``host``:``port`` (a wildcard address listens on
    every host; a loopback one only for clients on this machine)."""
    parts = urlsplit(url)
    if parts.scheme != scheme or (parts.port or DEFAULT_PORTS[scheme]) != port:
        return False
    if host in WILDCARDS:
        return True
    named, bound = _ip(parts.hostname or ""), _ip(host)
    if named is not None:
        return named == bound
    return not (bound is not None and bound.is_loopback and parts.hostname != "localhost")


def unserved(
    *, public_url: str, crl_base_url: str, ca_base_url: str, host: str, port: int, http_port: int | None
) -> list[str]:
    """What a server at ``host`` (HTTPS on ``port``, plain HTTP on ``http_port`` if any) leaves unreached of the
    published URLs: one line for each, for the operator (a proxy in front may make it right)."""
    https = f"https://{url_host(host)}:{port}"
    http = f"http://{url_host(host)}:{http_port}" if http_port else None
    lines = []
    if not _reaches(public_url, "https", host, port):
        lines.append(
            f"the public URL is {public_url} but this server listens at {https}: clients given that URL will not "
            "reach it (fabguard config set public-url URL)"
        )
    missed = []
    for what, url, path in (("CRLs", crl_base_url, "/crl"), ("CA certificates", ca_base_url, "/ca")):
        here = _reaches(url, "https", host, port) or (http_port is not None and _reaches(url, "http", host, http_port))
        if not here or urlsplit(url).path.rstrip("/") != path:
            missed.append(f"{what} at {url}/")
    if missed:
        where = f"{http} (and {https})" if http else f"{https} only, with no plain HTTP (--http-port)"
        lines.append(
            f"certificates name {' and '.join(missed)} but this server publishes them at {where}: relying "
            "parties will not find them (fabguard serve --http-port PORT, or fabguard config set pki-url URL)"
        )
    return lines
