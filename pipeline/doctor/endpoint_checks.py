"""``--online``: the https half of List-Unsubscribe answers an RFC 8058 one-click POST.

Gmail and Yahoo POST ``List-Unsubscribe=One-Click`` to the URL in the header and expect
it to unsubscribe at once: a 2xx, no redirect, no page in between. The probe uses the
link of subscriber 0, which never exists (ids start at 1), so nobody is unsubscribed:
the server answers it as it answers an erased reader's link, 410 "no longer valid".
(Whether the server signs links with this same secret key cannot be told this way: a
link of nobody has no key to check.)
"""

from __future__ import annotations

import requests

from pipeline.doctor import Doctor, Finding, error, ok, warning

CHECK = "one-click unsubscribe"
BODY = "List-Unsubscribe=One-Click"


def check(doctor: Doctor) -> list[Finding]:
    if not doctor.online:
        return []
    return [one_click(doctor)]


def one_click(doctor: Doctor) -> Finding:
    base = doctor.settings.base_url
    shown = f"{base}/unsubscribe/<token>"
    try:
        response = doctor.http.post(
            f"{base}/unsubscribe/{doctor.probe_token or '0.none'}",
            data=BODY,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return error(
            CHECK,
            f"POST {shown} got no answer ({type(exc).__name__}): mail clients cannot "
            "unsubscribe readers; is `newsletter serve` reachable at base_url?",
        )
    status = response.status_code
    if 300 <= status < 400:
        return error(
            CHECK,
            f"POST {shown} redirects (HTTP {status} to {response.headers.get('Location', '?')}):"
            " one-click must answer itself; set base_url to the final address",
        )
    if status == 400 and not doctor.probe_token:
        return warning(
            CHECK,
            f"POST {shown} answers (400 for a made-up link); set NEWSLETTER_SECRET_KEY to "
            "probe with a real one",
        )
    if status == 400:
        return error(
            CHECK,
            f"POST {shown} refuses a link signed with this NEWSLETTER_SECRET_KEY (400): the "
            "server runs with another key, so the links you send would not work",
        )
    if 200 <= status < 300 or status == 410:
        return ok(CHECK, f"POST {shown} answers {status}")
    return error(CHECK, f"POST {shown} answers HTTP {status}: mail clients cannot unsubscribe")
