"""``doctor --online``: one harmless call per provider that proves the credentials work.

Nothing is sent. Each call reads the account or domain the key belongs to, through the
provider's own session (its credentials and base URL, so ``api_base_url`` points it at
a local server in tests):

* Postmark: ``GET /server`` (the server token's server), ``GET /message-streams/<stream>``;
* SendGrid: ``GET /v3/scopes`` (the key may ``mail.send``);
* Mailgun: ``GET /v3/domains/<domain>`` (the domain exists in this region and is active);
* Amazon SES: ``GET /v2/email/account`` (sending enabled, out of the sandbox);
* Resend: ``GET /domains`` (the From domain is verified);
* SMTP: connect, STARTTLS, log in, QUIT.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from typing import Any

import requests

from pipeline.doctor import Finding, error, ok, warning
from pipeline.doctor.provider_dns import from_domain
from pipeline.providers.base import Provider
from pipeline.providers.http import HttpProvider
from pipeline.providers.smtp import parse_smtp_url
from pipeline.settings import Settings

CHECK = "credentials"


def verify(provider: Provider, settings: Settings) -> Finding:
    """Ask the provider whether it accepts these credentials (through its own session)."""
    checker = VERIFIERS.get(provider.name)
    if checker is None:
        return ok(CHECK, f"{provider.name}: nothing to ask online")
    try:
        return checker(provider, settings)
    except requests.RequestException as exc:
        where = getattr(provider, "base_url", provider.name)
        return error(CHECK, f"could not reach {where} ({type(exc).__name__}); try again later")
    except (OSError, smtplib.SMTPException) as exc:
        return error(CHECK, f"{provider.name}: {type(exc).__name__}: {exc}")


def _get(provider: HttpProvider, path: str) -> requests.Response:
    return provider.session.get(
        provider.base_url + path, auth=provider.request_auth(), timeout=provider.timeout
    )


def _refused(provider: HttpProvider, response: requests.Response) -> Finding | None:
    status = response.status_code
    if status in (401, 403):
        return error(
            CHECK,
            f"{provider.name} refused them (HTTP {status}: {provider.reason(response)}); "
            f"{provider.auth_hint}",
        )
    if status >= 400:
        return error(CHECK, f"{provider.name} answered HTTP {status}: {provider.reason(response)}")
    return None


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def postmark(provider: Any, settings: Settings) -> Finding:
    response = _get(provider, "/server")
    refused = _refused(provider, response)
    if refused:
        return refused
    server = _json(response).get("Name", "?")
    stream = provider.message_stream
    found = _get(provider, f"/message-streams/{stream}")
    if found.status_code != 200:
        return error(
            CHECK,
            f"token accepted (server {server!r}) but Postmark has no message stream "
            f"{stream!r} ({provider.reason(found)}): create a Broadcasts stream or set "
            "provider.postmark_message_stream",
        )
    kind = _json(found).get("MessageStreamType", "")
    if kind and kind != "Broadcasts":
        return warning(
            CHECK,
            f"token accepted; stream {stream!r} is {kind}: newsletters belong in a Broadcasts "
            "stream (Postmark's terms)",
        )
    return ok(CHECK, f"Postmark accepts the token (server {server!r}, stream {stream!r})")


def sendgrid(provider: Any, settings: Settings) -> Finding:
    response = _get(provider, "/v3/scopes")
    refused = _refused(provider, response)
    if refused:
        return refused
    scopes = _json(response).get("scopes", [])
    if "mail.send" not in scopes:
        return error(CHECK, "SendGrid knows the key but it may not send: give it Mail Send access")
    return ok(CHECK, "SendGrid accepts the key (scope mail.send)")


def mailgun(provider: Any, settings: Settings) -> Finding:
    response = _get(provider, f"/v3/domains/{provider.domain}")
    if response.status_code == 404:
        return error(
            CHECK,
            f"Mailgun has no domain {provider.domain} in this region: check "
            "provider.mailgun_domain and provider.mailgun_region",
        )
    refused = _refused(provider, response)
    if refused:
        return refused
    state = str(dict(_json(response).get("domain") or {}).get("state", ""))
    if state != "active":
        return error(
            CHECK,
            f"Mailgun knows {provider.domain} but its state is {state or 'unknown'!r}: "
            "publish its DNS records and verify it in Mailgun",
        )
    return ok(CHECK, f"Mailgun accepts the key; {provider.domain} is active")


def ses(provider: Any, settings: Settings) -> Finding:
    response = _get(provider, "/v2/email/account")
    refused = _refused(provider, response)
    if refused:
        return refused
    account = _json(response)
    if not account.get("SendingEnabled", False):
        return error(CHECK, "SES accepts the keys but sending is disabled for this account")
    if not account.get("ProductionAccessEnabled", False):
        return error(
            CHECK,
            f"SES accepts the keys but the account is in the sandbox in {provider.region} "
            "(verified recipients only, 200 a day): request production access",
        )
    return ok(CHECK, f"SES accepts the keys; sending enabled in {provider.region}")


def resend(provider: Any, settings: Settings) -> Finding:
    response = _get(provider, "/domains")
    if response.status_code == 401 and "restricted_api_key" in response.text:
        return ok(CHECK, "Resend accepts the key (a sending-only key: domains not visible)")
    refused = _refused(provider, response)
    if refused:
        return refused
    domain = from_domain(settings)
    domains = {str(d.get("name", "")).lower(): d for d in _json(response).get("data", [])}
    status = str(domains.get(domain, {}).get("status", ""))
    if status != "verified":
        return error(
            CHECK,
            f"Resend accepts the key but {domain} is {status or 'not added'}: add and verify "
            "it under Domains",
        )
    return ok(CHECK, f"Resend accepts the key; {domain} is verified")


def smtp(provider: Any, settings: Settings) -> Finding:
    target = parse_smtp_url(settings.env.get("SMTP_URL", ""))
    timeout = float(settings.provider_options.get("timeout", 15.0))
    context = ssl.create_default_context()
    if target.implicit_tls:
        conn: smtplib.SMTP = smtplib.SMTP_SSL(
            target.host, target.port, timeout=timeout, context=context
        )
    else:
        conn = smtplib.SMTP(target.host, target.port, timeout=timeout)
    try:
        conn.ehlo()
        tls = target.implicit_tls
        if not tls and conn.has_extn("starttls"):
            conn.starttls(context=context)
            conn.ehlo()
            tls = True
        if target.username:
            conn.login(target.username, target.password)
    except smtplib.SMTPAuthenticationError:
        return error(CHECK, f"{target.where} refused the login: check the user and password")
    finally:
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()
    login = f" as {target.username}" if target.username else " (no login)"
    secured = "" if tls else "; warning: no TLS"
    return ok(CHECK, f"{target.where} accepts the connection{login}{secured}")


VERIFIERS: dict[str, Callable[[Any, Settings], Finding]] = {
    "postmark": postmark,
    "sendgrid": sendgrid,
    "mailgun": mailgun,
    "ses": ses,
    "resend": resend,
    "smtp": smtp,
}
