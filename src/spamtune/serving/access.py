"""Who may do what: two roles, feedback tokens, rate limits on feedback, and the Host check.

Roles (when the server has keys; without any, a local server is open to its own machine):
- admin (`--api-key`): everything that reads stored messages (/admin/api/*, the corrections CSV), relabelling as
  an operator, and /feedback.
- feedback (`--feedback-key`): /feedback only, for an app that reports its users' corrections. It reads nothing.
- a decision's own token: every answer carries `feedback_token`, an HMAC of the decision's id under the server's
  feedback secret, so the person who received a decision can correct that one decision (the page's "Wrong?")
  without any key. The secret comes from `--feedback-secret` / $SPAMTUNE_FEEDBACK_SECRET, else from the admin key,
  else a random one per process (tokens then hold for that process only).
Keys are compared in constant time and never logged. `Authorization: Bearer KEY` (any case of the scheme) or
`X-API-Key: KEY`; a bare key in Authorization is refused.

Feedback is rate-limited per client address and per credential (token bucket; 429 with Retry-After).

The Host check refuses a request whose Host header is not one the server answers to (421): a loopback server
answers only to loopback names, so a web page on another origin cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def given_key(request: Request) -> str | None:
    """The credential a request carries: X-API-Key, or Authorization with the Bearer scheme (case-insensitive)."""
    if key := request.headers.get("x-api-key"):
        return key
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def same(given: str | None, key: str | None) -> bool:
    return given is not None and key is not None and hmac.compare_digest(given.encode(), key.encode())


def unauthorized(what: str) -> HTTPException:
    return HTTPException(401, f"{what} (X-API-Key or Authorization: Bearer)", headers={"WWW-Authenticate": "Bearer"})


@dataclass
class Keys:
    """The server's credentials (see the module docstring)."""

    admin: str | None = None
    feedback: str | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))  # signs feedback tokens

    @classmethod
    def of(cls, admin: str | None, feedback: str | None, feedback_secret: str | None) -> Keys:
        if feedback_secret:
            secret = feedback_secret.encode()
        elif admin:  # every process sharing the admin key accepts every process's tokens
            secret = hmac.new(admin.encode(), b"spamtune feedback tokens", hashlib.sha256).digest()
        else:
            secret = secrets.token_bytes(32)
        return cls(admin, feedback, secret)

    @property
    def required(self) -> bool:
        return self.admin is not None or self.feedback is not None

    def token(self, prediction_id: str) -> str:
        """The token that lets the receiver of decision `prediction_id` correct it."""
        return hmac.new(self.secret, prediction_id.encode(), hashlib.sha256).hexdigest()[:32]

    def require_admin(self, request: Request) -> None:
        if self.admin is None and self.feedback is None:
            return
        given = given_key(request)
        if not same(given, self.admin):
            if same(given, self.feedback):
                raise HTTPException(403, "the feedback key may post /feedback only; this needs the admin key")
            raise unauthorized("the admin API key is required")

    def feedback_credential(self, request: Request, prediction_id: str, token: str | None) -> str:
        """Who posts this correction ("admin", "feedback-key", "token", "open"), or a 401."""
        given = given_key(request)
        if same(given, self.admin):
            return "admin"
        if same(given, self.feedback):
            return "feedback-key"
        if token is not None and hmac.compare_digest(token.encode(), self.token(prediction_id).encode()):
            return "token"
        if not self.required:
            return "open"
        raise unauthorized("a feedback key, the admin key or this decision's feedback_token is required")


class RateLimiter:
    """Token buckets per name (a client address, a credential): `per_minute` events, bursts of up to that many.
    At most `max_names` buckets are kept (least recently used dropped), so a scanner cannot grow memory."""

    def __init__(self, per_minute: float, max_names: int = 10_000) -> None:
        self.rate, self.burst, self.max_names = per_minute / 60.0, max(per_minute, 1.0), max_names
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # name -> (tokens, when)

    def wait_s(self, name: str, now: float | None = None) -> float:
        """0 and one event counted when `name` may act now; else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, then = self.buckets.pop(name, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self.buckets[name] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self.buckets) > self.max_names:
            self.buckets.popitem(last=False)
        return wait


def too_many(wait_s: float) -> HTTPException:
    return HTTPException(429, "too many corrections from here; retry later",
                         headers={"Retry-After": str(max(1, math.ceil(wait_s)))})


def allowed_hosts_for(bind: str, extra: list[str]) -> list[str] | None:
    """The Host names a server bound to `bind` answers to: `extra` when given; a loopback bind only to loopback
    names; None (any) for a server bound to every interface or a specific address without a list."""
    if extra:
        return [h.lower() for h in extra]
    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError:
        loopback = bind == "localhost"
    return list(LOOPBACK_HOSTS) if loopback else None


def host_name(header: str) -> str:
    """The name part of a Host header: "[::1]:8000" -> "::1", "Example.org:80" -> "example.org"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """ASGI middleware: 421 for a Host the server does not answer to (see the module docstring)."""

    def __init__(self, app, allowed: list[str] | None) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            if host_name(host) not in self.allowed:
                response = JSONResponse({"detail": "this server does not answer to that Host"}, status_code=421,
                                        headers={"Connection": "close"})
                return await response(scope, receive, send)
        await self.app(scope, receive, send)
