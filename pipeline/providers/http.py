"""The common base of the JSON/HTTP providers (in the spirit of anymail's base_requests).

It owns the ``requests`` session (keep-alive, User-Agent, credentials), the timeout on
every call, the retry of transient failures (connection errors, 429, 5xx) through
:mod:`pipeline.providers.retry`, and the wrapping of ``requests`` errors. A provider
module only builds its payload and reads the reply.

A reply that never came (read timeout) is different from a refused connection: the
provider may have accepted the batch. Only an idempotent provider (Resend, thanks to
its Idempotency-Key) retries it; the others raise :class:`OutcomeUnknown` so that the
caller does not mail anyone twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
import requests

from pipeline import __version__
from pipeline.errors import ProviderError
from pipeline.providers.base import Provider
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


class OutcomeUnknown(ProviderError):
    """The request went out but no reply came back: the provider may have accepted it.

    ``retryable`` is True (trying again can deliver), but a retry may deliver twice;
    the caller decides, knowing which messages were in the request.
    """


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire (orjson: 3x the stdlib on email bodies)."""
    return orjson.dumps(payload)


class HttpProvider(Provider):
    """A provider that talks JSON (or forms) over HTTPS with ``requests``."""

    default_base_url: ClassVar[str] = ""
    # Said on 401/403: which credential to check.
    auth_hint: ClassVar[str] = ""

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        retry: RetryPolicy,
        secrets: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retry = retry
        self._secrets = tuple(s for s in secrets if s)
        self._session: requests.Session | None = None

    @classmethod
    def http_options(
        cls, settings: Settings, sleep: Sleep | None = None, default_base_url: str | None = None
    ) -> dict[str, Any]:
        """Base URL, timeout and retry policy from settings: what every HTTP provider takes."""
        return {
            "base_url": cls.base_url_from(settings, default_base_url),
            "timeout": settings.provider_options.get("timeout", 15.0),
            "retry": retry_policy(settings, sleep),
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
        body: bytes | None = None,
        files: Sequence[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """POST with timeout and retries; returns any reply that is not transient."""
        url = self.base_url + path
        return call_with_retry(
            lambda: self._attempt(url, body, files, headers), self.retry, provider=self.name
        )

    def _attempt(
        self,
        url: str,
        body: bytes | None,
        files: Sequence[tuple[str, Any]] | None,
        headers: Mapping[str, str] | None,
    ) -> requests.Response:
        host = urlsplit(url).netloc
        try:
            response = self.session.post(
                url,
                data=body,
                files=files,
                headers=dict(headers or {}),
                auth=self.request_auth(),
                timeout=self.timeout,
            )
        except requests.ConnectionError as exc:  # includes ConnectTimeout: nothing was sent
            raise TryAgain(f"could not reach {host} ({type(exc).__name__})") from exc
        except requests.RequestException as exc:  # read timeout, broken reply
            raise self._no_reply(host, exc) from exc
        if self.is_transient(response):
            raise TryAgain(
                f"HTTP {response.status_code}: {self.reason(response)}",
                status=response.status_code,
                retry_after=retry_after_seconds(response.headers),
            )
        return response

    def _no_reply(self, host: str, exc: requests.RequestException) -> Exception:
        what = f"no complete reply from {host} within {self.timeout:g}s ({type(exc).__name__})"
        if self.idempotent:
            return TryAgain(what)
        return OutcomeUnknown(
            what,
            provider=self.name,
            retryable=True,
            hint="the provider may have accepted these messages: check its activity log"
            " before sending them again, or raise provider.timeout",
        )

    def is_transient(self, response: requests.Response) -> bool:
        """Whether a reply means "try the same request again later"."""
        return response.status_code == 429 or response.status_code >= 500

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
