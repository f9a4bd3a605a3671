"""The rules every request to bachd's web server passes, in this order:

1. **Host**: the ``Host`` header names the address bachd serves (``127.0.0.1:PORT`` or
   ``localhost:PORT``; with ``--ui-host``, that host). A page of another site that has
   re-pointed its own domain name at 127.0.0.1 (DNS rebinding) sends its own name: refused.
2. **Token**: a random per-run token (256 bits) in the query (``?token=``), the
   ``X-Bachd-Token`` header or the cookie set after the first page load; compared in
   constant time. Missing or wrong: refused.
3. **Origin**: a WebSocket handshake, or any request that changes something (not GET or
   HEAD), whose ``Origin`` is not the panel's own is refused (cross-site WebSocket hijacking,
   CSRF). Without an ``Origin`` (a script, not a browser) the token must come in the query or
   the header, never only the cookie a browser would attach by itself.

Refusals are 403 with a one-line reason. Pure logic on header values: the server applies it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Mapping, Optional

COOKIE = "bachd_token"
HEADER = "X-Bachd-Token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


@dataclass(frozen=True)
class Guard:
    token: str
    host: str  # what the server binds
    port: int

    def hosts(self) -> set[str]:
        """``Host`` header values that name bachd's server."""
        names = {self.host}
        if self.host in LOOPBACK:
            names |= {"127.0.0.1", "localhost"}
        names = {f"[{name}]" if ":" in name else name for name in names}
        return {f"{name}:{self.port}" for name in names}

    def _host_allowed(self, host: str) -> bool:
        if host in self.hosts():
            return True
        if self.host in ("0.0.0.0", "::"):  # every interface: an address, never a name (rebinding needs one)
            name = host.rsplit(":", 1)[0].strip("[]") if host.rsplit(":", 1)[-1] == str(self.port) else None
            try:
                ipaddress.ip_address(name or "")
                return True
            except ValueError:
                return False
        return False

    def refusal(self, method: str, headers: Mapping[str, str], query: Mapping[str, str],
                cookies: Mapping[str, str], websocket: bool = False) -> Optional[str]:
        """Why this request is refused, or None."""
        host = headers.get("Host", "")
        if not self._host_allowed(host):
            return f"refused: Host '{host}' is not this bachd"
        offered = query.get("token") or headers.get(HEADER)
        by_cookie = offered is None
        if by_cookie:
            offered = cookies.get(COOKIE)
        if not offered or not hmac.compare_digest(offered.encode(), self.token.encode()):
            return "refused: this needs the run's access token (the address bachd printed when it started)"
        if websocket or method not in ("GET", "HEAD"):
            origin = headers.get("Origin")
            if origin is None:
                if by_cookie:
                    return "refused: no Origin, and the token came only as a cookie"
            elif not any(origin == f"http://{name}" for name in self.hosts()) and not self._origin_is_own_address(origin):
                return f"refused: Origin '{origin}' is not this bachd's page"
        return None

    def _origin_is_own_address(self, origin: str) -> bool:
        return self.host in ("0.0.0.0", "::") and origin.startswith("http://") and self._host_allowed(origin[len("http://"):])
