"""SPF, DKIM and DMARC of the sending domain, MX of the reply (and unsubscribe) address.

Gmail, Yahoo and Microsoft require of bulk senders: SPF and DKIM, at least one of them
aligned with the From domain, and a DMARC record with a policy. Replies must reach a
mailbox. What each provider asks to publish is in :mod:`.provider_dns`.
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parseaddr

from pipeline.doctor import Doctor, Finding, error, ok, warning
from pipeline.doctor.dns_lookup import Dns, DnsUnavailable
from pipeline.doctor.provider_dns import (
    dkim_selectors,
    from_domain,
    sending_domain,
    spec_for,
    spf_hosts,
)

DMARC_POLICIES = ("none", "quarantine", "reject")


def check(doctor: Doctor) -> list[Finding]:
    steps: list[tuple[str, Callable[[Doctor], Finding]]] = [
        ("SPF", spf),
        ("DKIM", dkim),
        ("DMARC", dmarc),
        ("MX", reply_mx),
    ]
    if doctor.settings.unsubscribe_email:
        steps.append(("MX (unsubscribe)", unsubscribe_mx))
    findings = []
    for name, step in steps:
        try:
            findings.append(step(doctor))
        except DnsUnavailable as exc:
            findings.append(
                error(name, f"could not look it up: {exc} (check --dns-server or the network)")
            )
    return findings


# ---- SPF -------------------------------------------------------------------------------


def spf(doctor: Doctor) -> Finding:
    settings, dns = doctor.settings, doctor.dns
    spec = spec_for(settings)
    hosts = spf_hosts(settings)
    seen: dict[str, str] = {}
    for host in hosts:
        target = dns.cname(host)
        if target and spec.spf_cnames and target.endswith(spec.spf_cnames):
            return ok(
                "SPF", f"{host} is a CNAME to {target}: {settings.provider} publishes its SPF"
            )
        records = [r for r in dns.txt(host) if r.lower().startswith("v=spf1")]
        if len(records) > 1:
            return error(
                "SPF",
                f"{host} has {len(records)} SPF records; receivers treat that as a failure "
                "(permerror): merge them into one",
            )
        if not records:
            continue
        record = records[0]
        if _allows_anyone(record):
            return warning("SPF", f"{host}: {record!r} lets any server send as you: end it in ~all")
        if not spec.spf_includes or _includes(record, spec.spf_includes):
            return ok("SPF", f"{host}: {record}")
        seen[host] = record
    fix = spec.spf_fix.format(domain=sending_domain(settings))
    if seen:
        host, record = next(iter(seen.items()))
        return warning(
            "SPF",
            f"{host} has {record!r}, which does not name {settings.provider}: publish {fix}",
        )
    return error("SPF", f"no SPF record at {' or '.join(hosts)}: publish {fix}")


def _terms(record: str) -> list[str]:
    return [t.lower() for t in record.split()[1:]]


def _includes(record: str, wanted: tuple[str, ...]) -> bool:
    named = {t.split(":", 1)[1] for t in _terms(record) if t.lstrip("+").startswith("include:")}
    named |= {t.split("=", 1)[1] for t in _terms(record) if t.startswith("redirect=")}
    return any(w in named for w in wanted)


def _allows_anyone(record: str) -> bool:
    return any(t in ("+all", "all") for t in _terms(record))


# ---- DKIM ------------------------------------------------------------------------------


def dkim(doctor: Doctor) -> Finding:
    settings, dns = doctor.settings, doctor.dns
    spec = spec_for(settings)
    domain = sending_domain(settings)
    author_domain = from_domain(settings)
    if not aligned(domain, author_domain):
        return error(
            "DKIM",
            f"{settings.provider} signs for {domain}, but mail is From {author_domain}: DMARC "
            "fails; send From an address on the sending domain (or the other way round)",
        )
    selectors, need_all = dkim_selectors(settings)
    where = spec.where or "your provider's DNS settings"
    if not selectors:
        return warning(
            "DKIM",
            f"cannot check: {settings.provider} has no fixed DKIM selector; set "
            f'[provider] dkim_selectors = "..." to the selector(s) shown in {where}',
        )
    found, problems = [], []
    for selector in selectors:
        name = f"{selector}._domainkey.{domain}"
        problem = _key_problem(dns, name, spec.dkim_cnames)
        (problems if problem else found).append(problem or name)
    if found and (not need_all or not problems):
        return ok("DKIM", f"key published at {', '.join(found)}")
    missing = "; ".join(p for p in problems if p)
    return error("DKIM", f"{missing}: publish the DKIM record(s) from {where}")


def _key_problem(dns: Dns, name: str, delegated: tuple[str, ...]) -> str:
    """'' when a usable public key is at ``name``, else what is wrong there."""
    target = dns.cname(name)
    if target and delegated and not target.endswith(delegated):
        return f"{name} is a CNAME to {target}, not into {' or '.join(delegated)}"
    for record in dns.txt(name):
        tags = _tags(record)
        if "p" in tags:
            return "" if tags["p"] else f"{name} holds a revoked key (empty p=)"
    return f"no DKIM key at {name}" + (f" (CNAME to {target})" if target else "")


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def aligned(a: str, b: str) -> bool:
    """Relaxed DMARC alignment, approximately: one domain is the other or a subdomain."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b or a.endswith(f".{b}") or b.endswith(f".{a}")


# ---- DMARC -----------------------------------------------------------------------------


def dmarc(doctor: Doctor) -> Finding:
    domain = from_domain(doctor.settings)
    labels = domain.split(".")
    for start in range(len(labels) - 1):  # the domain, then its parents (organizational)
        name = ".".join(labels[start:])
        records = [
            r for r in doctor.dns.txt(f"_dmarc.{name}") if r.strip().lower().startswith("v=dmarc1")
        ]
        if len(records) > 1:
            return error("DMARC", f"_dmarc.{name} has {len(records)} DMARC records: keep one")
        if records:
            return _policy(domain, name, _tags(records[0]))
    return error(
        "DMARC",
        f'no DMARC record at _dmarc.{domain}: publish TXT "v=DMARC1; p=none; '
        f'rua=mailto:dmarc@{domain}" (Gmail and Yahoo require one of bulk senders)',
    )


def _policy(domain: str, name: str, tags: dict[str, str]) -> Finding:
    policy = tags.get("sp", tags.get("p", "")) if name != domain else tags.get("p", "")
    inherited = "" if name == domain else f" (from {name})"
    if policy.lower() not in DMARC_POLICIES:
        return error(
            "DMARC",
            f"_dmarc.{name} has no valid policy (p={policy!r}){inherited}: "
            "use p=none, p=quarantine or p=reject",
        )
    if policy.lower() == "none":
        return ok(
            "DMARC",
            f"p=none at _dmarc.{name}{inherited}: enough for Gmail and Yahoo; move to "
            "quarantine once the reports show only your own mail",
        )
    return ok("DMARC", f"p={policy.lower()} at _dmarc.{name}{inherited}")


# ---- MX --------------------------------------------------------------------------------


def reply_mx(doctor: Doctor) -> Finding:
    settings = doctor.settings
    address = parseaddr(settings.reply_to)[1] or settings.from_email
    return _mx("MX", doctor.dns, address, "replies to")


def unsubscribe_mx(doctor: Doctor) -> Finding:
    settings = doctor.settings
    return _mx("MX (unsubscribe)", doctor.dns, settings.unsubscribe_email, "mailto unsubscribes to")


def _mx(check: str, dns: Dns, address: str, what: str) -> Finding:
    domain = address.rpartition("@")[2].lower()
    records = dns.mx(domain)
    if any(host in ("", ".") for _, host in records):
        return error(check, f"{domain} says it takes no mail (null MX): {what} {address} bounce")
    if records:
        return ok(check, f"{what} {address} go to {records[0][1]}")
    if dns.addresses(domain):
        return warning(
            check, f"{domain} has no MX record: {what} {address} rely on its A record's host"
        )
    return error(
        check,
        f"{domain} has no MX record: {what} {address} bounce; give the domain a mailbox "
        "(MX record) or use another address",
    )
