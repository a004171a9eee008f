"""Settings that must be real before readers get mail: base_url, From, postal address,
the secret key that signs every link."""

from __future__ import annotations

from email.utils import parseaddr

from pipeline.doctor import Doctor, Finding, error, ok, warning
from pipeline.doctor.provider_dns import from_domain
from pipeline.guard import fix_hint, live_links_problem
from pipeline.settings import SCHEMA, Settings

PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net")
PLACEHOLDER_SUFFIXES = (".example", ".test", ".invalid", ".localhost", ".local")
# Mailbox providers whose DMARC policy rejects their own addresses sent from elsewhere.
FREEMAIL = frozenset(
    {"gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com",
     "aol.com", "icloud.com", "me.com", "gmx.com", "gmx.de", "web.de", "proton.me"}
)  # fmt: skip
MIN_SECRET = 32


def check(doctor: Doctor) -> list[Finding]:
    s = doctor.settings
    return [base_url(s), sender(s), reply_to(s), postal_address(s), secret_key(s)]


def base_url(s: Settings) -> Finding:
    problem = live_links_problem(s)
    if problem is None:
        return ok("base_url", f"{s.base_url} (links in every email)")
    if s.provider == "outbox":
        return warning("base_url", f"{problem}; fine while mail goes to the outbox")
    return error("base_url", f"{problem}; {fix_hint(s)}")


def placeholder(domain: str) -> bool:
    domain = domain.lower()
    return (
        domain in PLACEHOLDER_DOMAINS
        or domain.endswith(tuple(f".{d}" for d in PLACEHOLDER_DOMAINS))
        or domain.endswith(PLACEHOLDER_SUFFIXES)
        or domain == "localhost"
    )


def sender(s: Settings) -> Finding:
    domain = from_domain(s)
    if placeholder(domain):
        return error("from", f"{s.from_addr} is a placeholder: set [site] from to your own address")
    if domain in FREEMAIL:
        return error(
            "from",
            f"{s.from_email} is a {domain} address: {domain}'s DMARC policy tells receivers "
            "to reject it when it comes through an email service; send From your own domain",
        )
    name = parseaddr(s.from_addr)[0]
    if not name:
        return warning("from", f"{s.from_email} has no display name: readers see a bare address")
    return ok("from", s.from_addr)


def reply_to(s: Settings) -> Finding:
    if not s.reply_to:
        return ok("reply-to", f"not set: replies go to {s.from_email}")
    address = parseaddr(s.reply_to)[1]
    if "@" not in address:
        return error("reply-to", f"[site] reply_to {s.reply_to!r} is not an address")
    if placeholder(address.rpartition("@")[2]):
        return error("reply-to", f"{address} is a placeholder: set [site] reply_to")
    return ok("reply-to", address)


def postal_address(s: Settings) -> Finding:
    default = SCHEMA["site"]["postal_address"][1]
    if not s.postal_address.strip() or s.postal_address == default:
        return error(
            "postal address",
            "the footer shows the placeholder address; the law (CAN-SPAM, and others) wants "
            "your real postal address: set [site] postal_address",
        )
    return ok("postal address", s.postal_address)


def secret_key(s: Settings) -> Finding:
    value = s.env.get("NEWSLETTER_SECRET_KEY", "")
    if not value:
        return error(
            "secret key",
            "NEWSLETTER_SECRET_KEY is not set: links are signed with the local development "
            f"key {s.var_dir / 'secret.key'}; set the same long random value wherever "
            "`newsletter serve` and `newsletter send` run, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))' (never change it "
            "later: old emails' links depend on it)",
        )
    if len(value) < MIN_SECRET:
        return warning(
            "secret key",
            f"NEWSLETTER_SECRET_KEY is {len(value)} characters: use at least {MIN_SECRET}",
        )
    return ok("secret key", "NEWSLETTER_SECRET_KEY is set")
