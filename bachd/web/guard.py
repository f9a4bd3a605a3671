"""The rules every request to bachd's web server passes, before anything else reads it:

1. **Host**: the ``Host`` header names the address bachd serves (``127.0.0.1:PORT`` or
   ``localhost:PORT``; with ``--ui-host``, that host; on every interface, an address or a
   loopback name with bachd's port). A page of another site that has re-pointed its own
   domain name at 127.0.0.1 (DNS rebinding) sends its own name: refused.
2. **Token**: a random per-run token (256 bits) in the query (``?token=``), the
   ``X-Bachd-Token`` header or the cookie set after the first page load, whose name carries
   the port (every server on 127.0.0.1 shares one cookie jar, so two bachd pages must not
   overwrite each other's); compared in constant time. Missing or wrong: refused.
3. **Origin**: a request that carries an ``Origin`` is answered only when it is the page's
   own, ``http://`` and the ``Host`` it was served from. A WebSocket (its path, or any
   ``Upgrade`` header, whatever its spelling) or a request that changes something (not GET
   or HEAD) without an ``Origin`` (a script, not a browser) must bring the token in the
   query or the header, never only in the cookie a browser would attach by itself.

A header may hold any bytes: nothing here raises on them. Refusals are 403 with a one-line
reason. Pure logic on header values: the server applies it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

COOKIE_PREFIX = "bachd_token_"
HEADER = "X-Bachd-Token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::")
SOCKET_PATHS = ("/ws",)


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def cookie_name(port: int) -> str:
    """The token's cookie for the server on ``port``."""
    return f"{COOKIE_PREFIX}{port}"


def _raw(text: str) -> bytes:
    """Header text back to its bytes (aiohttp keeps bytes that are not UTF-8 as surrogates)."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Guard:
    token: str
    host: str  # what the server binds
    port: int

    @property
    def cookie(self) -> str:
        return cookie_name(self.port)

    def hosts(self) -> set[str]:
        """``Host`` header values that name bachd's server by name (an address, on every
        interface, is checked by :meth:`host_allowed`)."""
        names = {self.host}
        if self.host in LOOPBACK or self.host in WILDCARD:
            names |= {"127.0.0.1", "localhost", "::1"}
        names -= set(WILDCARD)
        names = {f"[{name}]" if ":" in name else name for name in names}
        return {f"{name}:{self.port}" for name in names}

    def host_allowed(self, host: str) -> bool:
        if host in self.hosts():
            return True
        if self.host in WILDCARD:  # every interface: an address, never a name (rebinding needs one)
            name, _, port = host.rpartition(":")
            if port != str(self.port):
                return False
            try:
                ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
                return True
            except ValueError:
                return False
        return False

    def refusal(self, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str],
                cookies: Mapping[str, str]) -> Optional[str]:
        """Why this request is refused, or None."""
        host = headers.get("Host", "")
        if not self.host_allowed(host):
            return f"refused: Host '{_shown(host)}' is not this bachd"
        offered = query.get("token") or headers.get(HEADER)
        by_cookie = offered is None
        if by_cookie:
            offered = cookies.get(self.cookie)
        if not offered or not hmac.compare_digest(_raw(offered), self.token.encode()):
            return "refused: this needs the run's access token (the address bachd printed when it started)"
        origin = headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            return f"refused: Origin '{_shown(origin)}' is not this bachd's page"
        socket = path in SOCKET_PATHS or "Upgrade" in headers
        if (socket or method not in ("GET", "HEAD")) and origin is None and by_cookie:
            return "refused: no Origin, and the token came only as a cookie"
        return None


def _shown(text: str) -> str:
    """An untrusted header as printable ASCII, cut short, for a one-line refusal."""
    return ascii(text[:80])[1:-1]
