"""`newsletter doctor`: every check, DNS through a real DNS server on 127.0.0.1 (dnslib)
with good and bad records, `--online` against local servers standing in for the
providers' APIs, the real web app for the one-click POST, and rates from the store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dns_server import dns_server
from test_webhook_helpers import WEBHOOK_ENV, sent_campaign

from pipeline.cli import cli
from pipeline.doctor import Doctor, dns_checks
from pipeline.doctor.dns_lookup import Dns, parse_server
from pipeline.errors import ConfigError
from pipeline.providers.webhook_events import Event, EventType
from pipeline.settings import Settings, load_settings
from subscribers.events import EventLog, Target
from subscribers.store import Store

DOMAIN = "hingestrength.com"
SECRET = "doctor-test-secret-key-0123456789abcdef"
SITE = f"""\
[site]
name = "Hinge Strength"
base_url = "https://news.{DOMAIN}"
site_url = "https://{DOMAIN}"
from = "Coach Sam <coach@{DOMAIN}>"
reply_to = "coach@{DOMAIN}"
postal_address = "Hinge Strength, 42 Barbell Lane, Portland, OR 97201, USA"
"""
GOOD_ZONE = f"""
{DOMAIN}. 300 IN TXT "v=spf1 include:_spf.google.com ~all"
{DOMAIN}. 300 IN MX 10 mail.{DOMAIN}.
pm-bounces.{DOMAIN}. 300 IN CNAME pm.mtasv.net.
pm.mtasv.net. 300 IN TXT "v=spf1 ip4:50.31.156.96/27 ip4:104.245.209.192/26 -all"
20240101000000pm._domainkey.{DOMAIN}. 300 IN TXT "k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC7"
_dmarc.{DOMAIN}. 300 IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@{DOMAIN}"
"""
POSTMARK_ENV = {
    "NEWSLETTER_SECRET_KEY": SECRET,
    "POSTMARK_SERVER_TOKEN": "pm-server-token",
    **WEBHOOK_ENV,
}


def write_config(tmp_path: Path, provider: str = "", site: str = SITE) -> Path:
    config = tmp_path / "newsletter.toml"
    config.write_text(f"{site}\n[provider]\n{provider}\n")
    return config


POSTMARK = 'name = "postmark"\ndkim_selectors = "20240101000000pm"'


def run_doctor(config: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, str]]:
    """Exit status and ``{check: "level: message"}`` of one `newsletter doctor` run."""
    full = {"NEWSLETTER_CONFIG": str(config), "PATH": "/usr/bin:/bin", **env}
    result = CliRunner().invoke(cli, ["doctor", *args], env=full, catch_exceptions=False)
    found = {}
    for line in result.output.splitlines():
        level, sep, rest = line.partition(": ")
        if sep and level in ("ok", "warning", "error"):
            check, _, message = rest.partition(": ")
            found[check] = f"{level}: {message}"
    assert found, result.output
    return result.exit_code, found


# ---- the whole report ---------------------------------------------------------------------


def test_a_ready_setup_is_all_ok_and_asks_the_given_dns_server(tmp_path: Path) -> None:
    config = write_config(tmp_path, POSTMARK)
    with dns_server(GOOD_ZONE) as (server, zone):
        code, found = run_doctor(config, POSTMARK_ENV, "--dns-server", server)
    assert code == 0, found
    assert all(v.startswith("ok: ") for v in found.values()), found
    assert set(found) == {
        "base_url", "from", "reply-to", "postal address", "secret key", "provider",
        "credentials", "webhooks", "inbound", "SPF", "DKIM", "DMARC", "MX",
        "bounce rate", "complaint rate",
    }  # fmt: skip
    assert found["SPF"] == (
        f"ok: pm-bounces.{DOMAIN} is a CNAME to pm.mtasv.net: postmark publishes its SPF"
    )
    assert found["DKIM"] == f"ok: key published at 20240101000000pm._domainkey.{DOMAIN}"
    assert found["DMARC"] == f"ok: p=quarantine at _dmarc.{DOMAIN}"
    assert found["MX"] == f"ok: replies to coach@{DOMAIN} go to mail.{DOMAIN}"
    assert (f"_dmarc.{DOMAIN}", "TXT") in zone.queries  # the lookups went to our server


def test_a_fresh_clone_gets_a_list_of_what_to_fix(project: Path) -> None:
    """The shipped newsletter.toml, no secrets, a domain with no records: exit 1."""
    with dns_server("") as (server, _):
        code, found = run_doctor(project / "newsletter.toml", {}, "--dns-server", server)
    assert code == 1
    assert found["from"].startswith("error: Coach Sam at Hinge Strength <coach@hingestrength")
    assert "is a placeholder: set [site] from" in found["from"]
    assert found["secret key"].startswith("error: NEWSLETTER_SECRET_KEY is not set")
    assert found["provider"].startswith("warning: outbox writes every message to")
    assert found["base_url"].startswith("warning: base_url http://127.0.0.1:8000 is not https")
    assert found["SPF"].startswith("error: no SPF record at hingestrength.example.com")
    assert found["DMARC"].startswith("error: no DMARC record at _dmarc.hingestrength.example.com")
    assert found["MX"].startswith("error: hingestrength.example.com has no MX record")


def test_help_and_readme(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--help"])
    assert "--dns-server HOST:PORT" in result.output and "--online" in result.output


# ---- settings --------------------------------------------------------------------------


ADDRESS = 'postal_address = "Hinge Strength, 42 Barbell Lane, Portland, OR 97201, USA"'
PLACEHOLDER = 'postal_address = "123 Example Street, Springfield, USA"'
GMAIL = ("coach@hingestrength.com>", "hingestrength@gmail.com>")
LOCAL = (f"https://news.{DOMAIN}", "http://127.0.0.1:8000")
SETTINGS_CASES = [
    (("coach@", "coach.sam@"), {}, "from", "ok: Coach Sam <coach.sam@"),
    (GMAIL, {}, "from", "error: hingestrength@gmail.com is a gmail.com address: gmail.com's"),
    (("42 Barbell Lane", "x"), {}, "postal address", "ok: Hinge Strength, x"),
    ((ADDRESS, PLACEHOLDER), {}, "postal address", "error: the footer shows the placeholder"),
    (LOCAL, {}, "base_url", "error: base_url http://127.0.0.1:8000 is not https and points"),
    (("", ""), {"NEWSLETTER_SECRET_KEY": ""}, "secret key", "error: NEWSLETTER_SECRET_KEY is not"),
    (("", ""), {"NEWSLETTER_SECRET_KEY": "short"}, "secret key", "warning: NEWSLETTER_SECRET_KEY"),
    (("", ""), {"POSTMARK_SERVER_TOKEN": ""}, "credentials", "error: provider postmark needs"),
    (("", ""), {"POSTMARK_WEBHOOK_PASSWORD": ""}, "webhooks", "error: bounces and complaints are"),
]


@pytest.mark.parametrize(("site_change", "env_change", "check", "expected"), SETTINGS_CASES)
def test_settings_and_secrets(
    tmp_path: Path, site_change: tuple[str, str], env_change: dict, check: str, expected: str
) -> None:
    site = SITE.replace(*site_change) if site_change[0] else SITE
    config = write_config(tmp_path, POSTMARK, site)
    with dns_server(GOOD_ZONE) as (server, _):
        code, found = run_doctor(config, {**POSTMARK_ENV, **env_change}, "--dns-server", server)
    assert found[check].startswith(expected), found[check]
    assert code == (1 if expected.startswith("error") else 0)


def test_smtp_has_no_webhooks_to_check(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'name = "smtp"')
    env = {"NEWSLETTER_SECRET_KEY": SECRET, "SMTP_URL": "smtp://u:p@127.0.0.1:2525"}
    with dns_server(GOOD_ZONE) as (server, _):
        _, found = run_doctor(config, env, "--dns-server", server)
    assert found["webhooks"].startswith("warning: smtp reports no bounces or complaints to us")
    assert found["SPF"] == f"ok: {DOMAIN}: v=spf1 include:_spf.google.com ~all"


def test_inbound_path_is_checked(tmp_path: Path) -> None:
    site = SITE + f'unsubscribe_email = "unsubscribe@inbound.{DOMAIN}"\n'
    config = write_config(tmp_path, POSTMARK + '\ninbound = "postmark"', site)
    zone = GOOD_ZONE + f"inbound.{DOMAIN}. 300 IN MX 10 inbound.postmarkapp.com.\n"
    with dns_server(zone) as (server, _):
        _, found = run_doctor(config, POSTMARK_ENV, "--dns-server", server)
        _, unset = run_doctor(
            config, {**POSTMARK_ENV, "POSTMARK_WEBHOOK_USER": ""}, "--dns-server", server
        )
    assert found["inbound"] == (
        f"ok: mail to unsubscribe@inbound.{DOMAIN} reaches https://news.{DOMAIN}/inbound/postmark "
        "(route it there at postmark)"
    )
    assert found["MX (unsubscribe)"] == (
        f"ok: mailto unsubscribes to unsubscribe@inbound.{DOMAIN} go to inbound.postmarkapp.com"
    )
    assert unset["inbound"].startswith(
        f"error: mailto unsubscribes to unsubscribe@inbound.{DOMAIN} are advertised but refused"
    )


# ---- DNS, record by record -------------------------------------------------------------------


def dns_findings(zone: str, provider: str = POSTMARK, site: str = SITE, **kw: Any) -> dict:
    config_dir = Path(kw.pop("tmp"))
    settings = load_settings(write_config(config_dir, provider, site), env={})
    with dns_server(zone, **kw) as (server, _):
        findings = dns_checks.check(Doctor(settings=settings, dns=Dns(server)))
    return {f.check: f"{f.level}: {f.message}" for f in findings}


APEX_MX = f"{DOMAIN}. 300 IN MX 10 mail.{DOMAIN}.\n"
DMARC = f'_dmarc.{DOMAIN}. 300 IN TXT "v=DMARC1; p=reject"\n'
S1 = f"s1._domainkey.{DOMAIN}. 300 IN CNAME s1.domainkey.u17.wl017.sendgrid.net.\n"
S1 += 's1.domainkey.u17.wl017.sendgrid.net. 300 IN TXT "k=rsa; p=MIGfMA0GCSq1"\n'
S2 = S1.replace("s1", "s2")
SENDGRID = 'name = "sendgrid"'


D = DOMAIN
PM_KEY = f"20240101000000pm._domainkey.{D}"
MAILGUN = f'name = "mailgun"\nmailgun_domain = "mg.{D}"'
SES_TOKEN = f"abc123._domainkey.{D}. 300 IN CNAME abc123.dkim.amazonses.com.\n"
SES_TOKEN += 'abc123.dkim.amazonses.com. 300 IN TXT "p=MIGf"'
RESEND_SPF = f'send.{D}. 300 IN TXT "v=spf1 include:amazonses.com ~all"'
RESEND_KEY = f'resend._domainkey.{D}. 300 IN TXT "p=MIGfMA0"'
EVIL_S1 = S1.replace("sendgrid.net", "evil.example.net")
DNS_CASES = [
    ("", POSTMARK, "SPF", f"error: no SPF record at pm-bounces.{D} or {D}: publish a CNAME"),
    (
        f'{D}. 300 IN TXT "v=spf1 mx ~all"',
        POSTMARK,
        "SPF",
        "warning: hingestrength.com has 'v=spf1",
    ),
    (f'{D}. 300 IN TXT "v=spf1 include:spf.mtasv.net ~all"', POSTMARK, "SPF", f"ok: {D}: v=spf1"),
    (
        f'{D}. 300 IN TXT "v=spf1 mx ~all"\n{D}. 300 IN TXT "v=spf1 include:spf.mtasv.net ~all"',
        POSTMARK,
        "SPF",
        f"error: {D} has 2 SPF records",
    ),
    (f'{D}. 300 IN TXT "v=spf1 include:sendgrid.net +all"', SENDGRID, "SPF", "warning: hinge"),
    (f'{D}. 300 IN TXT "v=spf1 include:sendgrid.net ~all"', SENDGRID, "SPF", f"ok: {D}: v=spf1"),
    (S1 + S2, SENDGRID, "DKIM", f"ok: key published at s1._domainkey.{D}, s2._domainkey.{D}"),
    (S1, SENDGRID, "DKIM", f"error: no DKIM key at s2._domainkey.{D}: publish the DKIM record"),
    (EVIL_S1 + S2, SENDGRID, "DKIM", f"error: s1._domainkey.{D} is a CNAME to s1.domainkey.u17"),
    (f'{PM_KEY}. 300 IN TXT "k=rsa; p="', POSTMARK, "DKIM", f"error: {PM_KEY} holds a revoked key"),
    ("", 'name = "ses"', "DKIM", "warning: cannot check: ses has no fixed DKIM selector; set"),
    (SES_TOKEN, 'name = "ses"\ndkim_selectors = "abc123"', "DKIM", "ok: key published at abc123"),
    (RESEND_SPF, 'name = "resend"', "SPF", f"ok: send.{D}: v=spf1 include:amazonses.com ~all"),
    (RESEND_KEY, 'name = "resend"', "DKIM", f"ok: key published at resend._domainkey.{D}"),
    (f'mg.{D}. 300 IN TXT "v=spf1 include:mailgun.org ~all"', MAILGUN, "SPF", f"ok: mg.{D}: v="),
    (f'k1._domainkey.mg.{D}. 300 IN TXT "p=MIGfMA0"', MAILGUN, "DKIM", "ok: key published at k1"),
    (
        "",
        'name = "mailgun"\nmailgun_domain = "mg.otherbrand.net"',
        "DKIM",
        f"error: mailgun signs for mg.otherbrand.net, but mail is From {D}: DMARC fails",
    ),
    ("", POSTMARK, "DMARC", f'error: no DMARC record at _dmarc.{D}: publish TXT "v=DMARC1; p=none'),
    (DMARC.replace("reject", "none"), POSTMARK, "DMARC", f"ok: p=none at _dmarc.{D}: enough for"),
    (DMARC.replace("p=reject", "rua=x"), POSTMARK, "DMARC", f"error: _dmarc.{D} has no valid poli"),
    (DMARC + DMARC.replace("reject", "none"), POSTMARK, "DMARC", f"error: _dmarc.{D} has 2 DMARC"),
    (APEX_MX, POSTMARK, "MX", f"ok: replies to coach@{D} go to mail.{D}"),
    (f"{D}. 300 IN MX 0 .", POSTMARK, "MX", f"error: {D} says it takes no mail (null MX)"),
    (f"{D}. 300 IN A 93.184.216.34", POSTMARK, "MX", f"warning: {D} has no MX record: replies"),
    ("", POSTMARK, "MX", f"error: {D} has no MX record: replies to coach@{D} bounce"),
]


@pytest.mark.parametrize(("zone", "provider", "check", "expected"), DNS_CASES)
def test_dns_records(tmp_path: Path, zone: str, provider: str, check: str, expected: str) -> None:
    found = dns_findings(zone, provider, tmp=tmp_path)
    assert found[check].startswith(expected), found[check]


def test_dmarc_of_the_organizational_domain_applies_to_a_subdomain(tmp_path: Path) -> None:
    site = SITE.replace(f"coach@{DOMAIN}", f"coach@news.{DOMAIN}")
    zone = f'_dmarc.{DOMAIN}. 300 IN TXT "v=DMARC1; p=reject; sp=quarantine"'
    found = dns_findings(zone, POSTMARK, site, tmp=tmp_path)
    assert found["DMARC"] == f"ok: p=quarantine at _dmarc.{DOMAIN} (from {DOMAIN})"


def test_a_server_failure_is_not_mistaken_for_a_missing_record(tmp_path: Path) -> None:
    found = dns_findings(GOOD_ZONE, POSTMARK, tmp=tmp_path, servfail=(f"_dmarc.{DOMAIN}",))
    assert found["DMARC"].startswith("error: could not look it up: no DNS server answered")
    assert found["SPF"].startswith("ok")


def test_dns_server_argument() -> None:
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("[::1]:53") == ("::1", 53)
    assert parse_server("1.1.1.1") == ("1.1.1.1", 53)
    with pytest.raises(ConfigError, match="the port must be a number"):
        parse_server("127.0.0.1:dns")


# ---- bounce and complaint rates ------------------------------------------------------------


def record(store: Store, n: int, kind: EventType, ids: list[int], bounce: str = "") -> None:
    log = EventLog(store)
    now = dt.datetime.now(dt.UTC)
    for i in range(n):
        event = Event("postmark", f"{kind}-{i}", kind, bounce=bounce, occurred_at=now)
        log.record(event, Target(None, ids[i], f"reader{i}@example.com"))


@pytest.fixture
def sent(tmp_path: Path) -> Iterator[tuple[Path, Store, list[int]]]:
    config = write_config(tmp_path, POSTMARK)
    settings = load_settings(config, env={"NEWSLETTER_SECRET_KEY": SECRET})
    with Store.from_settings(settings) as store:
        emails = [f"reader{i}@example.com" for i in range(1000)]
        mailed = sent_campaign(
            store, settings, emails, "postmark", [f"pm-{i}" for i in range(1000)]
        )
        yield config, store, [mailed[e].subscriber_id for e in emails]


RATE_CASES = [
    (0, 0, "ok: 0.00% (0 spam complaints of 1000 sent in the last 30 days), under", "ok: 0.00%"),
    (2, 30, "warning: 0.20% (2 spam complaints of 1000 sent", "warning: 3.00% (30 hard bounces"),
    (3, 50, "error: 0.30% (3 spam complaints of 1000 sent", "error: 5.00% (50 hard bounces"),
]


@pytest.mark.parametrize(("complaints", "bounces", "complaint", "bounce"), RATE_CASES)
def test_rates_of_the_last_30_days(
    sent: tuple[Path, Store, list[int]], complaints: int, bounces: int, complaint: str, bounce: str
) -> None:
    config, store, ids = sent
    record(store, 1, EventType.DELIVERED, ids)  # the webhooks report
    record(store, complaints, EventType.COMPLAINED, ids)
    record(store, bounces, EventType.BOUNCED, ids, bounce="hard")
    record(store, 40, EventType.BOUNCED, ids, bounce="soft")  # soft bounces do not count
    with dns_server(GOOD_ZONE) as (server, _):
        _, found = run_doctor(config, POSTMARK_ENV, "--dns-server", server)
    assert found["complaint rate"].startswith(complaint), found["complaint rate"]
    assert found["bounce rate"].startswith(bounce)


def test_sent_but_nothing_reported_means_unknown_rates(sent: tuple[Path, Store, list[int]]) -> None:
    config, _, _ = sent
    with dns_server(GOOD_ZONE) as (server, _):
        _, found = run_doctor(config, POSTMARK_ENV, "--dns-server", server)
    assert found["rates"].startswith(
        "warning: 1000 sent in the last 30 days but no provider event recorded"
    )


@pytest.mark.postgres
def test_delivery_counts_on_postgresql(pg_url: str, settings: Settings) -> None:
    from helpers import pg_schema

    with pg_schema(pg_url) as url, Store(url, topics=list(settings.topics)) as store:
        emails = [f"reader{i}@example.com" for i in range(10)]
        mailed = sent_campaign(store, settings, emails, "postmark", [f"p{i}" for i in range(10)])
        ids = [mailed[e].subscriber_id for e in emails]
        record(store, 2, EventType.COMPLAINED, ids)
        record(store, 1, EventType.BOUNCED, ids, bounce="hard")
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        counts = EventLog(store).delivery_counts(since)
        assert counts == {"sent": 10, "bounced": 1, "complained": 2, "reported": 3}
        later = EventLog(store).delivery_counts(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        assert later == {"sent": 0, "bounced": 0, "complained": 0, "reported": 0}
