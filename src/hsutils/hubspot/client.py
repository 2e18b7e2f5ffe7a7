"""HubSpot client factory: token handling, a client-side rate limiter, retries and one-line errors.

Every call goes through the official `hubspot-api-client`. The factory plugs two things into it:
- a sliding-window rate limiter that every HTTP attempt (first tries and urllib3 retries) passes through, with
  tier presets (`starter` 100, `pro`/`enterprise` 190 requests per 10 s);
- a urllib3 `Retry` that retries 429 and 5xx for every method, POST included (`allowed_methods=None`), with
  exponential backoff and respect for `Retry-After`.
Errors become `HubSpotError` (an InputError: one line, exit 2) with the access token scrubbed from the text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from urllib3.util.retry import Retry

from hsutils.errors import InputError

log = logging.getLogger(__name__)

TOKEN_ENV = "HUBSPOT_ACCESS_TOKEN"
DEFAULT_HOST = "https://api.hubapi.com"
TIERS = {"starter": 100, "free": 100, "pro": 190, "professional": 190, "enterprise": 190}
INTERVAL_SECONDS = 10.0
RETRY_STATUSES = (429, 500, 502, 503, 504)


class HubSpotError(InputError):
    """A HubSpot call failed in a way the user must fix or retry later (one line, exit 2)."""

    def __init__(self, message: str, status: int | None = None, category: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.category = category


# ----- token -------------------------------------------------------------------------------------------------
def resolve_token(env_file: str | Path | None = None) -> str:
    """The access token from HUBSPOT_ACCESS_TOKEN, else from a .env file (searched from the working folder)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    from dotenv import dotenv_values, find_dotenv

    path = str(env_file) if env_file else find_dotenv(usecwd=True)
    if path and Path(path).is_file():
        token = (dotenv_values(path).get(TOKEN_ENV) or "").strip()
        if token:
            return token
    raise InputError(f"{TOKEN_ENV} is not set: export it or put it in a .env file "
                     "(a private app access token with the CRM scopes hsutils needs)")


def scrub(text: str, token: str | None) -> str:
    """Remove the token (and any bearer credential) from a text before it is shown or written."""
    text = str(text)
    if token:
        text = text.replace(token, "***")
    return re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+", r"\1***", text)


# ----- rate limiter ------------------------------------------------------------------------------------------
def parse_rate(rate: str | int | None) -> int | None:
    """Requests per 10 s from a tier name or a number; None or 0 switches the limiter off."""
    if rate is None or rate == "" or rate == 0:
        return None
    if isinstance(rate, int):
        return rate if rate > 0 else None
    text = str(rate).strip().lower()
    if text in ("off", "none", "0"):
        return None
    if text in TIERS:
        return TIERS[text]
    if text.isdigit():
        return int(text)
    raise InputError(f"rate {rate!r}: use a tier ({', '.join(sorted(set(TIERS)))}), a number per 10 s, or off")


class RateLimiter:
    """At most `max_requests` in any `interval` seconds (sliding window), shared by threads."""

    def __init__(self, max_requests: int | None, interval: float = INTERVAL_SECONDS, margin: float = 0.1) -> None:
        self.max_requests = max_requests
        self.interval = interval + margin  # a little slack so the server's window never sees one too many
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        if not self.max_requests:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                while self._sent and now - self._sent[0] >= self.interval:
                    self._sent.popleft()
                if len(self._sent) < self.max_requests:
                    self._sent.append(now)
                    return
                delay = self.interval - (now - self._sent[0])
            self.waited += delay
            time.sleep(max(delay, 0.001))


@dataclass
class Stats:
    """What the client did: HTTP attempts per operation, retries per status."""

    attempts: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.attempts.values())


class LimitedRetry(Retry):
    """urllib3 Retry that passes every retry attempt through the rate limiter and counts it."""

    limiter: RateLimiter | None = None
    stats: Stats | None = None

    def new(self, **kw: Any) -> LimitedRetry:
        retry = super().new(**kw)
        retry.limiter, retry.stats = self.limiter, self.stats
        return retry

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        if self.stats is not None:
            self.stats.retries[getattr(response, "status", "connection")] += 1
            self.stats.attempts["retry"] += 1
        if self.limiter is not None:
            self.limiter.acquire()


def make_retry(limiter: RateLimiter | None, stats: Stats | None, total: int = 8, backoff: float = 0.5) -> Retry:
    """Retry 429 and 5xx for every method (POST too), honouring Retry-After, then give the last answer back."""
    retry = LimitedRetry(
        total=total,
        connect=total,
        read=2,
        status=total,
        backoff_factor=backoff,
        backoff_max=30,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    retry.limiter, retry.stats = limiter, stats
    return retry


# ----- connection --------------------------------------------------------------------------------------------
class Connection:
    """One configured HubSpot client plus its limiter, stats and cached API objects."""

    def __init__(self, host: str = DEFAULT_HOST, token: str | None = None, rate: str | int | None = "pro",
                 retries: int = 8, backoff: float = 0.5, timeout: float = 120.0,
                 interval: float = INTERVAL_SECONDS) -> None:
        from hubspot import HubSpot
        from hubspot.discovery.discovery_base import DiscoveryBase

        self.host = host.rstrip("/")
        self._token = token or resolve_token()
        self.limiter = RateLimiter(parse_rate(rate), interval=interval)
        self.stats = Stats()
        self.timeout = timeout
        self._apis: dict[str, Any] = {}
        limiter, stats = self.limiter, self.stats

        def api_factory(package: Any, api_name: str, config: dict[str, Any]) -> Any:
            api = DiscoveryBase._default_api_factory(package, api_name, config)
            rest = api.api_client.rest_client
            original = rest.request

            def limited(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                limiter.acquire()
                stats.attempts[f"{method} {_route(url)}"] += 1
                if kwargs.get("_request_timeout") is None:
                    kwargs["_request_timeout"] = timeout
                return original(method, url, *args, **kwargs)

            rest.request = limited
            return api

        self.client = HubSpot(access_token=self._token, host=self.host,
                              retry=make_retry(limiter, stats, retries, backoff), api_factory=api_factory)

    def api(self, dotted: str) -> Any:
        """An API object such as "crm.companies.batch_api", built once and reused (one connection pool)."""
        if dotted not in self._apis:
            obj: Any = self.client
            for part in dotted.split("."):
                obj = getattr(obj, part)
            self._apis[dotted] = obj
        return self._apis[dotted]

    def call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; turn every failure into a one-line HubSpotError without the token."""
        try:
            return func(*args, **kwargs)
        except urllib3.exceptions.MaxRetryError as exc:
            reason = getattr(exc, "reason", None)
            raise HubSpotError(scrub(f"{what}: HubSpot at {self.host} did not answer after retries "
                                     f"({type(reason).__name__ if reason else 'MaxRetryError'})", self._token)) from None
        except urllib3.exceptions.HTTPError as exc:
            raise HubSpotError(scrub(f"{what}: connection to {self.host} failed ({type(exc).__name__})",
                                     self._token)) from None
        except Exception as exc:
            if _is_api_exception(exc):
                raise explain(exc, what, self._token) from None
            raise

    def call_json(self, what: str, func: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run one client call and return its JSON answer as dicts (skips the models' slow deserialisation)."""
        response = self.call(what, func, *args, _preload_content=False, **kwargs)
        try:
            data = response.data
        finally:
            response.release_conn()
        try:
            return json.loads(data)
        except ValueError:
            raise HubSpotError(f"{what}: HubSpot answered something that is not JSON") from None

    def __repr__(self) -> str:  # never show the token
        return f"Connection(host={self.host!r}, rate={self.limiter.max_requests})"


def _route(url: str) -> str:
    path = re.sub(r"^https?://[^/]+", "", url.split("?")[0])
    return re.sub(r"/\d+(?=/|$)", "/{id}", path)


def _is_api_exception(exc: BaseException) -> bool:
    return any(cls.__name__ == "ApiException" for cls in type(exc).__mro__) and hasattr(exc, "status")


def error_body(exc: Any) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {"message": str(body)[:200]}
    return parsed if isinstance(parsed, dict) else {}


def missing_scopes(body: dict[str, Any]) -> list[str]:
    scopes: list[str] = []
    for err in body.get("errors") or []:
        context = (err or {}).get("context") or {}
        for key in ("requiredGranularScopes", "requiredScopes"):
            scopes += [str(s) for s in context.get(key) or []]
    return sorted(set(scopes))


def explain(exc: Any, what: str, token: str | None) -> HubSpotError:
    """A one-line explanation of an ApiException (401, 403 with the missing scopes, 429, other statuses)."""
    status = getattr(exc, "status", None)
    body = error_body(exc)
    category = body.get("category") or body.get("errorType")
    if status == 401:
        msg = (f"{what}: HubSpot rejected the access token (401 {category or 'unauthorized'}): it is missing, "
               f"expired or revoked; set {TOKEN_ENV} to a valid private app token")
    elif status == 403:
        scopes = missing_scopes(body)
        if scopes:
            msg = (f"{what}: the access token lacks the scope(s) {', '.join(scopes)} (403 MISSING_SCOPES); "
                   "add them to the private app and use its new token")
        else:
            msg = f"{what}: HubSpot refused access (403 {category or 'forbidden'}): {body.get('message', '')}"
    elif status == 429:
        msg = (f"{what}: HubSpot rate limit still exceeded after retries (429 {body.get('policyName', '')}); "
               "lower --rate or try again later")
    else:
        msg = f"{what}: HubSpot answered {status} {category or ''}: {body.get('message', getattr(exc, 'reason', ''))}"
    return HubSpotError(scrub(msg, token), status=status, category=category)


def connect(host: str = DEFAULT_HOST, token: str | None = None, rate: str | int | None = "pro",
            retries: int = 8, backoff: float = 0.5) -> Connection:
    """Build a Connection (token from the argument, HUBSPOT_ACCESS_TOKEN or .env)."""
    return Connection(host=host, token=token, rate=rate, retries=retries, backoff=backoff)
