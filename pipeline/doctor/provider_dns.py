"""What each provider documents for the DNS of a sending domain (checked by the doctor).

SPF: the host whose SPF counts (the Return-Path, or bounce, domain) and what it must
name: an ``include:`` in its SPF record, or a CNAME into the provider (a delegated
return path, whose SPF the provider publishes). ``{domain}`` is the From domain;
``[provider] bounce_domain`` overrides the host. DKIM: the selectors the provider signs
with (``[provider] dkim_selectors`` overrides them), whether all or any of them must be
published, and where a CNAME-delegated key points.

Sources (the providers' setup pages):
* Postmark: DKIM TXT at ``<date>pm._domainkey`` (a selector per domain, shown under
  Sender Signatures -> DNS Settings); Return-Path CNAME ``pm-bounces`` -> ``pm.mtasv.net``;
  an apex ``include:spf.mtasv.net`` also counts.
* SendGrid (automated security): ``s1._domainkey`` and ``s2._domainkey`` CNAMEs into
  ``sendgrid.net``; the return path ``em<N>.<domain>`` is a CNAME to ``sendgrid.net`` (set
  its name as bounce_domain); manual setup uses ``include:sendgrid.net``.
* Mailgun: SPF ``include:mailgun.org`` (EU ``include:eu.mailgun.org``) and a DKIM TXT on
  the sending domain (``mailgun_domain``); the selector varies by account (``pdk1``,
  ``pdk2``, ``k1``, ``krs``, ``mx``, ``smtp``, ``pic``, ``mailo``).
* Amazon SES: Easy DKIM, three CNAMEs ``<token>._domainkey`` ->
  ``<token>.dkim.amazonses.com`` (the tokens are the selectors: set them); a custom MAIL
  FROM domain has ``include:amazonses.com``.
* Resend: DKIM TXT at ``resend._domainkey``; the return path ``send.<domain>`` with
  ``include:amazonses.com`` (and an MX to ``feedback-smtp.<region>.amazonses.com``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import Settings


@dataclass(frozen=True)
class DnsSpec:
    spf_hosts: tuple[str, ...]  # tried in order; "{domain}" is the From domain
    spf_includes: tuple[str, ...]  # an include: of one of these counts
    spf_cnames: tuple[str, ...] = ()  # ... or a CNAME to a host ending with one of these
    dkim_selectors: tuple[str, ...] = ()
    dkim_all: bool = True  # every selector must be published (else: any one)
    dkim_cnames: tuple[str, ...] = ()  # a delegated key's CNAME ends with one of these
    where: str = ""  # where the author finds the exact records
    spf_fix: str = "an SPF record naming your sending servers at {domain}"


SPECS: dict[str, DnsSpec] = {
    "postmark": DnsSpec(
        spf_hosts=("pm-bounces.{domain}", "{domain}"),
        spf_includes=("spf.mtasv.net",),
        spf_cnames=("pm.mtasv.net",),
        where="Postmark: Sender Signatures -> your domain -> DNS Settings",
        spf_fix="a CNAME pm-bounces.{domain} -> pm.mtasv.net (Postmark's custom Return-Path)",
    ),
    "sendgrid": DnsSpec(
        spf_hosts=("{domain}",),
        spf_includes=("sendgrid.net",),
        spf_cnames=("sendgrid.net",),
        dkim_selectors=("s1", "s2"),
        dkim_cnames=("sendgrid.net",),
        where="SendGrid: Settings -> Sender Authentication -> your domain",
        spf_fix="include:sendgrid.net in the SPF of {domain}, or set provider.bounce_domain "
        "to the em<N>.{domain} CNAME of automated security",
    ),
    "mailgun": DnsSpec(
        spf_hosts=("{domain}",),
        spf_includes=("mailgun.org",),
        dkim_selectors=("pdk1", "pdk2", "k1", "krs", "mx", "smtp", "pic", "mailo"),
        dkim_all=False,
        dkim_cnames=("mailgun.org",),
        where="Mailgun: Sending -> Domains -> your domain -> DNS records",
        spf_fix='TXT "v=spf1 include:mailgun.org ~all" at {domain}',
    ),
    "ses": DnsSpec(
        spf_hosts=("{domain}",),
        spf_includes=("amazonses.com",),
        dkim_cnames=("dkim.amazonses.com",),
        where="Amazon SES: Configuration -> Identities -> your domain -> Authentication",
        spf_fix="include:amazonses.com in the SPF of {domain}, or a custom MAIL FROM domain "
        "(set it as provider.bounce_domain)",
    ),
    "resend": DnsSpec(
        spf_hosts=("send.{domain}",),
        spf_includes=("amazonses.com",),
        dkim_selectors=("resend",),
        where="Resend: Domains -> your domain",
        spf_fix='TXT "v=spf1 include:amazonses.com ~all" at send.{domain}',
    ),
    "smtp": DnsSpec(spf_hosts=("{domain}",), spf_includes=(), where="your SMTP service's setup"),
    "outbox": DnsSpec(spf_hosts=("{domain}",), spf_includes=()),
}


def spec_for(settings: Settings) -> DnsSpec:
    spec = SPECS.get(settings.provider, SPECS["smtp"])
    if settings.provider == "mailgun" and settings.provider_options.get("mailgun_region") == "eu":
        spec = DnsSpec(**{**spec.__dict__, "spf_includes": ("eu.mailgun.org", "mailgun.org")})
    return spec


def from_domain(settings: Settings) -> str:
    """The domain of the From address, lowercased."""
    return settings.from_email.rpartition("@")[2].lower()


def sending_domain(settings: Settings) -> str:
    """The domain the provider signs for: Mailgun's sending domain, else the From domain."""
    if settings.provider == "mailgun":
        domain = str(settings.provider_options.get("mailgun_domain") or "").strip()
        if domain:
            return domain.lower()
    return from_domain(settings)


def spf_hosts(settings: Settings) -> list[str]:
    override = str(settings.provider_options.get("bounce_domain") or "").strip().lower()
    if override:
        return [override]
    domain = sending_domain(settings)
    return [host.format(domain=domain) for host in spec_for(settings).spf_hosts]


def dkim_selectors(settings: Settings) -> tuple[tuple[str, ...], bool]:
    """(selectors, all of them needed?): the configured ones, else the documented ones."""
    raw = str(settings.provider_options.get("dkim_selectors") or "")
    chosen = tuple(s.strip() for s in raw.replace(",", " ").split() if s.strip())
    if chosen:
        return chosen, True
    spec = spec_for(settings)
    return spec.dkim_selectors, spec.dkim_all
