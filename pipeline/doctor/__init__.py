"""``newsletter doctor``: is this setup ready to mail real readers?

One finding per line, ``ok|warning|error: <check>: <what, and what to do>``; any error
means "not yet" (the command exits 1). The checks come in families, one module each:

* :mod:`.settings_checks`: base_url, From, postal address, secret key;
* :mod:`.provider_checks`: provider, its credentials (and, ``--online``, a harmless API
  call that proves them), webhook secrets, the inbound path for mailto unsubscribes;
* :mod:`.dns_checks`: SPF, DKIM, DMARC of the From domain and MX of the reply address,
  what Gmail, Yahoo and Microsoft require of bulk senders (dnspython, any resolver);
* :mod:`.endpoint_checks` (``--online``): the unsubscribe URL answers a one-click POST;
* :mod:`.rate_checks`: bounce and complaint rates of the last 30 days.

Nothing here imports ``subscribers``: the CLI hands in the delivery figures through
:class:`DeliveryStats`, as ``send`` does with its ledger.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import requests

from pipeline.doctor.dns_lookup import Dns
from pipeline.settings import Settings

OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warning | error
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.check}: {self.message}"


def ok(check: str, message: str) -> Finding:
    return Finding(OK, check, message)


def warning(check: str, message: str) -> Finding:
    return Finding(WARNING, check, message)


def error(check: str, message: str) -> Finding:
    return Finding(ERROR, check, message)


@dataclass(frozen=True)
class Rates:
    """Messages sent in a window, and the recipients among them who bounced (hard) or
    complained (marked as spam), as the provider's webhooks reported."""

    sent: int
    bounced: int
    complained: int
    reported: int = 0  # provider events of any kind in the window (0: webhooks silent?)


class DeliveryStats(Protocol):
    def delivery_rates(self, since: dt.datetime) -> Rates: ...


@dataclass
class Doctor:
    """What the checks need: settings, a resolver, and for ``--online`` an HTTP session."""

    settings: Settings
    dns: Dns
    online: bool = False
    stats: DeliveryStats | None = None
    stats_problem: str = ""  # why there are no figures (the database is unreachable ...)
    probe_token: str = ""  # subscriber 0's link token, for the one-click probe ('' if no key)
    http: requests.Session = field(default_factory=requests.Session)
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


def run(doctor: Doctor) -> list[Finding]:
    """Every check, in the order a reader of the output fixes things."""
    from pipeline.doctor import (
        dns_checks,
        endpoint_checks,
        provider_checks,
        rate_checks,
        settings_checks,
    )

    families: Iterable[Callable[[Doctor], list[Finding]]] = (
        settings_checks.check,
        provider_checks.check,
        dns_checks.check,
        endpoint_checks.check,
        rate_checks.check,
    )
    return [finding for family in families for finding in family(doctor)]
