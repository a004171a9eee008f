"""Bounce and complaint rates of the last 30 days, from the events providers reported.

Complaints (spam reports) against Gmail's and Yahoo's line: keep under 0.1%, never reach
0.3%. Hard bounces against what the email services act on (SES reviews an account at
5%, most services warn past 2%): a list with many dead addresses looks bought.
"""

from __future__ import annotations

import datetime as dt

from pipeline.doctor import Doctor, Finding, error, ok, warning

WINDOW = dt.timedelta(days=30)
COMPLAINTS = (0.001, 0.003)  # warning from, error from
BOUNCES = (0.02, 0.05)


def check(doctor: Doctor) -> list[Finding]:
    if doctor.stats is None:
        return [error("rates", f"no delivery figures: {doctor.stats_problem}")]
    rates = doctor.stats.delivery_rates(doctor.now() - WINDOW)
    if rates.sent == 0:
        quiet = "nothing sent in the last 30 days"
        return [ok("bounce rate", quiet), ok("complaint rate", quiet)]
    if rates.reported == 0:
        return [
            warning(
                "rates",
                f"{rates.sent} sent in the last 30 days but no provider event recorded: "
                "bounces and complaints are unknown until the webhooks are set up",
            )
        ]
    return [
        _rate("bounce rate", rates.bounced, rates.sent, BOUNCES, "hard bounces"),
        _rate("complaint rate", rates.complained, rates.sent, COMPLAINTS, "spam complaints"),
    ]


def _rate(check: str, count: int, sent: int, limits: tuple[float, float], what: str) -> Finding:
    rate = count / sent
    text = f"{rate:.2%} ({count} {what} of {sent} sent in the last 30 days)"
    warn_at, error_at = limits
    if rate >= error_at:
        return error(
            check,
            f"{text}, at or above {error_at:.1%}: stop sending and clean the list "
            "(confirmed opt-in only, remove addresses that never engage)",
        )
    if rate >= warn_at:
        return warning(check, f"{text}, above {warn_at:.1%}: keep it under that")
    return ok(check, f"{text}, under {warn_at:.1%}")
