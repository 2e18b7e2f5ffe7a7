"""HubSpot client factory: token handling, a client-side rate limiter, retries and one-line errors.

Every call goes through the official `hubspot-api-client`. The factory plugs two things into it:
- a sliding-window rate limiter that every HTTP attempt (first tries and urllib3 retries) passes through, with
  tier presets (`starter` 100, `pro`/`enterprise` 190 requests per 10 s);
- a urllib3 `Retry` that retries 429 and 5xx for every method, POST included (`allowed_methods=None`), with
  exponential backoff and respect for `Retry-After` up to `MAX_WAIT_SECONDS`. An answer asking for a longer wait
  (HubSpot's daily limit spent, a long outage) is not slept through: the call stops with a one-line error saying
  how long HubSpot asked to wait, so an unattended run ends instead of hanging for hours. Until the server has
  answered once, a connection that fails (refused, unknown host, connect timeout) is retried only
  `FIRST_CONNECT_RETRIES` times: at the first request that is a wrong --host far more often than an outage.
Errors become `HubSpotError` (an InputError: one line, exit 2) with the access token scrubbed from the text.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from hsutils.errors import InputError

log = logging.getLogger(__name__)

TOKEN_ENV = "HUBSPOT_ACCESS_TOKEN"
DEFAULT_HOST = "https://api.hubapi.com"
TIERS = {"starter": 100, "free": 100, "pro": 190, "professional": 190, "enterprise": 190}
INTERVAL_SECONDS = 10.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
# the longest Retry-After slept through: HubSpot's windows are 1 s (search) and 10 s, so a longer ask is the daily
# limit or an outage, which a run should not wait out asleep
MAX_WAIT_SECONDS = 120.0
# connect retries before the server has answered once (then `retries`, 8 by default): a refused first connection
# fails in about a second instead of after 90 s of backoff
FIRST_CONNECT_RETRIES = 2
CONNECT_TIMEOUT_SECONDS = 10.0  # seconds to open a connection (reading an answer may take `timeout`)
DAILY_REMAINING_HEADER = "X-HubSpot-RateLimit-Daily-Remaining"
# a token at least this long is scrubbed wherever it appears, a shorter one only where it stands alone (see scrub)
WHOLE_TOKEN_LENGTH = 16


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
    """Remove the token (and any bearer credential) from a text before it is shown or written. A token of
    `WHOLE_TOKEN_LENGTH` characters or more (a real one: pat-na1-... is 44) is removed wherever it appears; a
    shorter one (a test token such as "abc") only where it stands alone, not inside a word ("f-abc" and "abc"
    go, "fabcd" stays), so that it cannot mangle the message."""
    text = str(text)
    if token and len(token) >= WHOLE_TOKEN_LENGTH:
        text = text.replace(token, "***")
    elif token:
        text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(token)}(?![A-Za-z0-9_])", "***", text)
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
    """What the client did: HTTP attempts per operation, retries per status, and whether the server answered
    any request yet (an error status is an answer too)."""

    attempts: Counter = field(default_factory=Counter)
    retries: Counter = field(default_factory=Counter)
    answered: bool = False

    @property
    def requests(self) -> int:
        return sum(self.attempts.values())


# ----- waits the server asks for ----------------------------------------------------------------------------
def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait (a number of seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def too_long_to_wait(status: int | None, headers: Mapping[str, str] | None, body: dict[str, Any],
                     max_wait: float = MAX_WAIT_SECONDS) -> str | None:
    """Why an answer asks for a wait too long to sleep through, in words for an error line: a Retry-After beyond
    `max_wait`, or a 429 for HubSpot's daily limit (`policyName` DAILY) without a Retry-After within it; None when
    a retry after a short wait may succeed."""
    headers = headers or {}
    seconds = retry_after_seconds(headers.get("Retry-After"))
    daily = status == 429 and (body.get("policyName") == "DAILY" or headers.get(DAILY_REMAINING_HEADER) == "0")
    if seconds is not None and seconds <= max_wait or seconds is None and not daily:
        return None
    answer = f"{status} {body.get('policyName') or ('DAILY' if daily else '')}".strip()
    if seconds is None:
        return f"HubSpot's daily API limit is spent ({answer}); it resets at midnight in the portal's time zone"
    until = (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (f"HubSpot asks to wait {seconds:,.0f} s, until {until} ({answer}"
            + (": the daily API limit is spent)" if daily else ")"))


class LimitedRetry(Retry):
    """urllib3 Retry that passes every retry attempt through the rate limiter and counts it, gives an answer
    asking for a wait longer than `max_wait` back at once instead of sleeping through it, and retries a failed
    connection only `first_connect` times while the server has not answered any request (`stats.answered`)."""

    limiter: RateLimiter | None = None
    stats: Stats | None = None
    max_wait: float = MAX_WAIT_SECONDS
    first_connect: int = FIRST_CONNECT_RETRIES

    def new(self, **kw: Any) -> LimitedRetry:
        retry = super().new(**kw)
        retry.limiter, retry.stats, retry.max_wait = self.limiter, self.stats, self.max_wait
        retry.first_connect = self.first_connect
        return retry

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None) -> LimitedRetry:
        if response is not None and self.stats is not None:
            self.stats.answered = True
        if error is not None and self._is_connection_error(error) and not (self.stats and self.stats.answered):
            failed = sum(1 for h in self.history if h.error is not None and self._is_connection_error(h.error))
            if failed >= self.first_connect:
                raise MaxRetryError(_pool, url, error) from error
        if response is not None:
            body = parse_error_body(response.data) if response.status == 429 else {}  # read once, kept for the caller
            if too_long_to_wait(response.status, response.headers, body, self.max_wait):
                # with raise_on_status=False urllib3 hands this answer to the caller, which explains it
                raise MaxRetryError(_pool, url, ResponseError("the server asks for a longer wait than allowed"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def get_retry_after(self, response: Any) -> float | None:
        seconds = retry_after_seconds(response.headers.get("Retry-After"))
        return None if seconds is None else min(seconds, self.max_wait)

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        if self.stats is not None:
            self.stats.retries[getattr(response, "status", "connection")] += 1
            self.stats.attempts["retry"] += 1
        if self.limiter is not None:
            self.limiter.acquire()


def make_retry(limiter: RateLimiter | None, stats: Stats | None, total: int = 8, backoff: float = 0.5,
               max_wait: float = MAX_WAIT_SECONDS) -> Retry:
    """Retry 429 and 5xx for every method (POST too), honouring Retry-After up to `max_wait` seconds, then give the
    last answer back (at once when the server asks for a longer wait); retry a failed connection `total` times once
    the server has answered, `FIRST_CONNECT_RETRIES` times before."""
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
    retry.limiter, retry.stats, retry.max_wait = limiter, stats, max_wait
    retry.first_connect = min(FIRST_CONNECT_RETRIES, total)
    return retry


# ----- connection --------------------------------------------------------------------------------------------
def base_url(host: str) -> str:
    """The API base URL `host` without a trailing slash; InputError for one without http(s):// and a host name
    (urllib3 would otherwise retry a URL it cannot reach for minutes)."""
    parsed = urlsplit(str(host).strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"--host {host!r} is not an http(s) URL: write it in full, e.g. https://api.hubapi.com or "
                         "http://127.0.0.1:8765")
    return str(host).strip().rstrip("/")


class Connection:
    """One configured HubSpot client plus its limiter, stats and cached API objects."""

    def __init__(self, host: str = DEFAULT_HOST, token: str | None = None, rate: str | int | None = "pro",
                 retries: int = 8, backoff: float = 0.5, timeout: float = 120.0,
                 interval: float = INTERVAL_SECONDS, max_wait: float = MAX_WAIT_SECONDS) -> None:
        from hubspot import HubSpot
        from hubspot.discovery.discovery_base import DiscoveryBase

        self.host = base_url(host)
        self._token = token or resolve_token()
        self.limiter = RateLimiter(parse_rate(rate), interval=interval)
        self.stats = Stats()
        self.timeout = timeout
        self.max_wait = max_wait
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
                    kwargs["_request_timeout"] = (min(CONNECT_TIMEOUT_SECONDS, timeout), timeout)
                try:
                    response = original(method, url, *args, **kwargs)
                except Exception as exc:
                    stats.answered = stats.answered or _is_api_exception(exc)  # an error status is an answer
                    raise
                stats.answered = True
                return response

            rest.request = limited
            return api

        self.client = HubSpot(access_token=self._token, host=self.host,
                              retry=make_retry(limiter, stats, retries, backoff, max_wait),
                              api_factory=api_factory)

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
            hint = "" if self.stats.answered else ": nothing answered at that address; check --host and the network"
            raise HubSpotError(scrub(f"{what}: HubSpot at {self.host} did not answer after retries "
                                     f"({type(reason).__name__ if reason else 'MaxRetryError'}){hint}",
                                     self._token)) from None
        except urllib3.exceptions.HTTPError as exc:
            raise HubSpotError(scrub(f"{what}: connection to {self.host} failed ({type(exc).__name__})",
                                     self._token)) from None
        except Exception as exc:
            if _is_api_exception(exc):
                raise explain(exc, what, self._token, self.max_wait) from None
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
    """The JSON body of an ApiException as a dict ({"message": text} when it is not JSON)."""
    return parse_error_body(getattr(exc, "body", None))


def parse_error_body(body: bytes | str | None) -> dict[str, Any]:
    """An error answer's JSON body as a dict ({"message": text} when it is not JSON)."""
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


def explain(exc: Any, what: str, token: str | None, max_wait: float = MAX_WAIT_SECONDS) -> HubSpotError:
    """A one-line explanation of an ApiException (401, 403 with the missing scopes, a wait too long to sleep
    through, 429, other statuses)."""
    status = getattr(exc, "status", None)
    body = error_body(exc)
    category = body.get("category") or body.get("errorType")
    wait = too_long_to_wait(status, getattr(exc, "headers", None), body, max_wait) if status in RETRY_STATUSES else None
    if wait:
        msg = (f"{what}: {wait}; stopped instead of waiting that long: run the same command again later, it resumes "
               "where it stopped (a pull from its checkpoint)")
    elif status == 401:
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
