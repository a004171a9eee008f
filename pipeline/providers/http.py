"""The common base of the JSON/HTTP providers (in the spirit of anymail's base_requests).

It owns the ``requests`` session (keep-alive, User-Agent, credentials), the timeout on
every call, the retry of transient failures through :mod:`pipeline.providers.retry`,
and the wrapping of ``requests`` errors. A provider module only builds its payload and
reads the reply.

Two kinds of failure are told apart, because only one of them may be retried blindly:

- **the request never left**: connection refused, DNS, TLS handshake, a connection
  lost before the whole body was written, HTTP 429 and 503 (refused before any work).
  These are retried with backoff.
- **it may have been accepted**: the whole request was written and then the answer
  was lost (a reset or close, a read timeout, a broken reply) or a gateway answered
  500/502/504. Only an idempotent provider (Resend, thanks to its Idempotency-Key)
  retries it; the others raise :class:`OutcomeUnknown`, the ledger marks the batch
  unknown, and it is settled by :meth:`Provider.lookup` or by the author.

Whether the whole request was written is known exactly: the session's connections
(:class:`TrackedAdapter`) note it when ``http.client`` has sent the last byte.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pipeline import __version__
from pipeline.errors import ProviderError
from pipeline.providers.base import REFUSED_STATUSES, OutcomeUnknown, Provider
from pipeline.providers.jsonbody import JsonBody
from pipeline.providers.retry import (
    RetryPolicy,
    Sleep,
    TryAgain,
    call_with_retry,
    retry_after_seconds,
    retry_policy,
)
from pipeline.settings import Settings

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
REASON_LIMIT = 300  # characters of a provider's reply kept in an error

__all__ = ["OutcomeUnknown", "HttpProvider", "BearerProvider", "TrackedAdapter", "encode_json"]

AFTER_WRITE_ERRORS = (
    requests.ReadTimeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# Set by the connections below, per thread: did the last request leave whole?
# None: no tracked connection got as far as writing (or none is in use).
_wire = threading.local()


def _request_written(exc: requests.RequestException) -> bool:
    """Whether the request that failed with ``exc`` had been written whole.

    Known exactly when the tracked connections ran; otherwise (a proxy's pool, or a
    test double in place of the adapter) judged by the error: only a timeout or a
    broken reply can follow a request that went out.
    """
    written = getattr(_wire, "written", None)
    if written is None:
        return isinstance(exc, AFTER_WRITE_ERRORS)
    return bool(written)


class _TrackedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _wire.written = False
        super().request(*args, **kwargs)
        _wire.written = True  # headers and body are all in the socket


class _TrackedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _wire.written = False
        super().request(*args, **kwargs)
        _wire.written = True


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class TrackedAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections record whether a request was written
    whole, so that a lost answer is told apart from a request that never left."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TrackedHTTPPool,
            "https": _TrackedHTTPSPool,
        }


class AnswerLost(TryAgain):
    """A lost answer that an idempotent provider may retry (the provider deduplicates)."""


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire (orjson: 3x the stdlib on email bodies)."""
    return orjson.dumps(payload)


class HttpProvider(Provider):
    """A provider that talks JSON (or forms) over HTTPS with ``requests``."""

    default_base_url: ClassVar[str] = ""
    # Seconds the provider's message search lags behind an accepted request.
    default_lookup_lag: ClassVar[float] = 30.0
    # Requests a second the provider documents as its limit (0: none documented).
    default_requests_per_second: ClassVar[float] = 0.0
    # Said on 401/403: which credential to check.
    auth_hint: ClassVar[str] = ""

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        retry: RetryPolicy,
        secrets: Sequence[str] = (),
        lookup_lag: float = 0.0,
        requests_per_second: float = 0.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.lookup_lag = float(lookup_lag)
        self.requests_per_second = float(requests_per_second or self.default_requests_per_second)
        self.retry = retry
        self._secrets = tuple(s for s in secrets if s)
        self._session: requests.Session | None = None

    @classmethod
    def http_options(
        cls, settings: Settings, sleep: Sleep | None = None, default_base_url: str | None = None
    ) -> dict[str, Any]:
        """Base URL, timeout and retry policy from settings: what every HTTP provider takes."""
        options = settings.provider_options
        lag = options.get("lookup_lag", -1)
        return {
            "base_url": cls.base_url_from(settings, default_base_url),
            "timeout": options.get("timeout", 15.0),
            "retry": retry_policy(settings, sleep),
            "lookup_lag": cls.default_lookup_lag if lag is None or lag < 0 else lag,
            "requests_per_second": float(options.get("requests_per_second", 0) or 0),
        }

    @classmethod
    def base_url_from(cls, settings: Settings, default: str | None = None) -> str:
        """``provider.api_base_url`` when set (local test servers), else the real host."""
        return str(settings.provider_options.get("api_base_url") or default or cls.default_base_url)

    # -- the session ---------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = self.new_session()
        return self._session

    def new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = TrackedAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = f"newsletter-pipeline/{__version__} ({self.name})"
        session.headers.update(self.auth_headers())
        return session

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry the credentials (kept on the session, never logged)."""
        return {}

    def request_auth(self) -> Any:
        """A ``requests`` auth object or tuple (Mailgun basic auth, SES SigV4), or None."""
        return None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.base_url}>"

    # -- calls -----------------------------------------------------------------------

    def post(
        self,
        path: str,
        *,
        body: bytes | JsonBody | None = None,
        files: Sequence[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """POST with timeout and retries; returns any reply that is not transient."""
        url = self.base_url + path
        lost: list[TryAgain] = []

        def attempt() -> requests.Response:
            try:
                return self._attempt(url, body, files, headers)
            except TryAgain as exc:
                if isinstance(exc, AnswerLost):
                    lost.append(exc)
                if isinstance(exc, AnswerLost) or exc.status in REFUSED_STATUSES:
                    self.congestion += 1
                raise

        try:
            return call_with_retry(attempt, self.retry, provider=self.name)
        except ProviderError as exc:
            if lost and not isinstance(exc, OutcomeUnknown):
                # An idempotent provider retried a lost answer and then gave up: one of
                # those tries may have been accepted, so the batch is not simply unsent.
                raise OutcomeUnknown(
                    f"{lost[-1].reason}; then {exc.message}",
                    provider=self.name,
                    retryable=True,
                    hint=exc.hint,
                ) from exc
            raise

    def _attempt(
        self,
        url: str,
        body: bytes | JsonBody | None,
        files: Sequence[tuple[str, Any]] | None,
        headers: Mapping[str, str] | None,
    ) -> requests.Response:
        host = urlsplit(url).netloc
        _wire.written = None
        try:
            response = self.session.post(
                url,
                data=body,
                files=files,
                headers=dict(headers or {}),
                auth=self.request_auth(),
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            if not _request_written(exc):  # refused, DNS, TLS, or cut before the last byte
                raise TryAgain(f"could not reach {host} ({type(exc).__name__})") from exc
            raise self._no_reply(f"the answer from {host} was lost", exc) from exc
        status = response.status_code
        if self.is_transient(response):
            raise TryAgain(
                f"HTTP {status}: {self.reason(response)}",
                status=status,
                retry_after=retry_after_seconds(response.headers),
            )
        if status >= 500:
            raise self._no_reply(f"HTTP {status} from {host}: {self.reason(response)}", None)
        return response

    def _no_reply(self, what: str, exc: requests.RequestException | None) -> Exception:
        """A request that went out whole and got no usable answer."""
        if exc is not None:
            kind = "no answer" if isinstance(exc, requests.Timeout) else type(exc).__name__
            what = f"{what} ({kind}; timeout {self.timeout:g}s)"
        if self.idempotent:
            return AnswerLost(what)
        return OutcomeUnknown(
            what,
            provider=self.name,
            retryable=True,
            hint="the provider may have accepted these messages; the send settles them "
            "before anything is sent again",
        )

    def is_transient(self, response: requests.Response) -> bool:
        """Whether a reply refuses the request for now, before any work was done."""
        return response.status_code in REFUSED_STATUSES

    def ask(
        self, method: str, path: str, *, params: Any = None, body: bytes | None = None
    ) -> requests.Response:
        """A read-only request (a lookup: safe to repeat) with timeout and retries; any
        reply that is not transient.

        ``path`` may also be a full URL a reply pointed to (paging), but only on the
        provider's own host: credentials never go anywhere else.
        """
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        if urlsplit(url).netloc != urlsplit(self.base_url).netloc:
            raise ProviderError(
                f"refusing to follow a link off {urlsplit(self.base_url).netloc}: {url[:100]}",
                provider=self.name,
            )
        return call_with_retry(
            lambda: self._ask(method, url, params, body), self.retry, provider=self.name
        )

    def _ask(self, method: str, url: str, params: Any, body: bytes | None) -> requests.Response:
        headers = JSON_HEADERS if body is not None else None
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=body,
                headers=headers,
                auth=self.request_auth(),
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            where = urlsplit(url).netloc
            raise TryAgain(f"lookup at {where} failed ({type(exc).__name__})") from exc
        if response.status_code in REFUSED_STATUSES or response.status_code >= 500:
            raise TryAgain(
                f"lookup: HTTP {response.status_code}",
                status=response.status_code,
                retry_after=retry_after_seconds(response.headers),
            )
        return response

    # -- reading replies -----------------------------------------------------------

    def json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise self.refuse(response, "the reply was not JSON") from exc

    def reason(self, response: requests.Response) -> str:
        """The provider's own words for a reply, short and without secrets."""
        try:
            data = response.json()
        except ValueError:
            return self.redact(response.text.strip()[:REASON_LIMIT])
        return self.redact(self.reason_from(data)[:REASON_LIMIT])

    def reason_from(self, data: Any) -> str:
        """The reason inside a JSON error body; providers override for their shape."""
        if isinstance(data, dict):
            for key in ("message", "Message", "error", "name"):
                if isinstance(data.get(key), str):
                    return data[key]
        return json.dumps(data)[:REASON_LIMIT]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def refuse(
        self,
        response: requests.Response,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool = False,
        reason: str | None = None,
    ) -> ProviderError:
        """The error for a reply that refuses the whole request."""
        return ProviderError(
            message,
            provider=self.name,
            status=response.status_code,
            reason=self.reason(response) if reason is None else self.redact(reason),
            retryable=retryable,
            retry_after=retry_after_seconds(response.headers) if retryable else None,
            hint=hint,
        )

    def unexpected(self, response: requests.Response) -> ProviderError:
        """The error for a reply no branch of the provider expected."""
        status = response.status_code
        if status in (401, 403):
            return self.refuse(
                response, "the provider refused the credentials", hint=self.auth_hint
            )
        if status == 404:
            return self.refuse(
                response,
                "API endpoint not found",
                hint="check provider.api_base_url (and the domain/region settings)",
            )
        if status == 413:
            return self.refuse(
                response, "request too large", hint="lower send.batch_size in newsletter.toml"
            )
        return self.refuse(response, f"unexpected reply HTTP {status}")


class BearerProvider(HttpProvider):
    """A JSON API authenticated by ``Authorization: Bearer KEY``, the key from one
    environment variable (SendGrid, Resend)."""

    secret_name: ClassVar[str]

    def __init__(self, *, api_key: str, **http: Any) -> None:
        super().__init__(secrets=(api_key,), **http)
        self._api_key = api_key

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Sleep | None = None) -> BearerProvider:
        api_key = settings.secret(cls.secret_name, needed_for=f"provider {cls.name}")
        return cls(api_key=api_key, **cls.http_options(settings, sleep))

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}
