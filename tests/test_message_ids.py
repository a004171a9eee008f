"""Opaque Message-IDs: no subscriber number visible, stable per campaign and subscriber,
read back by webhooks only when genuine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_webhook_helpers import (
    SLUG,
    TOPIC,
    Hook,
    event_rows,
    postmark_post,
    sent_campaign,
    webhook_app,
)

from pipeline.message_ids import MessageIds, OurMessageId

DOMAIN = "hingestrength.example.com"
IDS = MessageIds("test-secret-key", DOMAIN)
SHAPE = re.compile(r"<hip-hinge\.updates\.[0-9a-f]{32}@hingestrength\.example\.com>")


def test_ids_hide_the_subscriber_number_and_stay_stable() -> None:
    made = [IDS.make("hip-hinge", "updates", sid) for sid in range(1, 200)]
    assert all(SHAPE.fullmatch(m) for m in made)
    assert len(set(made)) == len(made)  # unique per subscriber
    assert made[41] == IDS.make("hip-hinge", "updates", 42)  # stable: resume, Resend key
    # neighbours share no visible structure beyond the campaign
    tokens = [m.split(".")[2].split("@")[0] for m in made[:10]]
    assert len({t[:4] for t in tokens}) == 10
    assert f".{42}@" not in made[41] and f".{7}@" not in made[6]


def test_each_campaign_gets_its_own_id_for_the_same_reader() -> None:
    a = IDS.make("hip-hinge", "updates", 5)
    b = IDS.make("bulletproof-back-program", "offers", 5)
    c = IDS.make("hip-hinge", "offers", 5)
    assert len({a, b, c}) == 3
    assert a.split(".")[2] != b.split(".")[2]


def test_ids_read_back_to_campaign_and_subscriber() -> None:
    for sid in (1, 2, 99_999, 2**40):
        mid = IDS.make("hip-hinge", "updates", sid)
        assert IDS.parse(mid) == OurMessageId("hip-hinge", "updates", sid, DOMAIN)
        assert IDS.parse(mid.strip("<>")) == OurMessageId("hip-hinge", "updates", sid, DOMAIN)


def test_made_up_or_foreign_ids_are_not_read() -> None:
    mid = IDS.make("hip-hinge", "updates", 5)
    token = mid.split(".")[2].split("@")[0]
    assert IDS.parse(f"<bulletproof-back-program.offers.{token}@{DOMAIN}>") is None  # moved
    assert IDS.parse(f"<hip-hinge.updates.{'0' * 32}@{DOMAIN}>") is None  # made up
    assert IDS.parse(mid.replace(DOMAIN, "other.example")) is None  # another site
    assert MessageIds("another-key", DOMAIN).parse(mid) is None  # another key
    assert IDS.parse("<hip-hinge.updates.preview@hingestrength.example.com>") is None
    assert IDS.parse("not a message id") is None


def test_ids_from_before_the_change_are_still_read() -> None:
    legacy = f"<hip-hinge.updates.17@{DOMAIN}>"
    assert IDS.parse(legacy) == OurMessageId("hip-hinge", "updates", 17, DOMAIN)


def test_names_stay_readable_for_previews_and_tests() -> None:
    assert IDS.make("hip-hinge", "updates", "preview") == f"<hip-hinge.updates.preview@{DOMAIN}>"


def test_ids_are_made_the_same_in_every_thread() -> None:
    from concurrent.futures import ThreadPoolExecutor

    campaign = IDS.for_campaign("hip-hinge", "updates")
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(campaign.make, range(2000)))
    assert made == [campaign.make(i) for i in range(2000)]


# ---- webhooks tie an opaque id to the reader ----------------------------------------------


@pytest.fixture
def hook(project: Path, test_env: dict[str, str]) -> Iterator[Hook]:
    with webhook_app(project, test_env) as hook:
        yield hook


def bounce(email: str, message_id: str, event_id: int) -> dict:
    return {
        "RecordType": "Bounce",
        "ID": event_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": f"00000000-0000-0000-0000-{event_id:012d}",
        "Metadata": {"message_id": message_id},
        "Email": email,
        "BouncedAt": "2026-11-23T10:00:00Z",
        "Description": "unknown user",
    }


def test_a_webhook_with_only_our_message_id_finds_campaign_and_reader(hook: Hook) -> None:
    sent = sent_campaign(hook.store, hook.settings, ["ann@example.com"], "postmark", ["p1"])
    ann = sent["ann@example.com"]
    assert SHAPE.fullmatch(ann.message_id)
    # The provider reports a different address (a forwarder): the Message-ID decides.
    resp = postmark_post(hook.client, bounce("forwarded@example.net", ann.message_id, 1))
    assert resp.status_code == 200
    [row] = event_rows(hook.store)
    assert row["subscriber_id"] == ann.subscriber_id and row["campaign_id"] is not None


def test_a_forged_message_id_ties_nobody(hook: Hook) -> None:
    sent_campaign(hook.store, hook.settings, ["ann@example.com"], "postmark", ["p1"])
    forged = f"<{SLUG}.{TOPIC}.{'ab' * 16}@{hook.settings.site_domain}>"
    resp = postmark_post(hook.client, bounce("stranger@example.net", forged, 2))
    assert resp.status_code == 200
    [row] = event_rows(hook.store)
    assert row["subscriber_id"] is None and row["campaign_id"] is None
    assert hook.store.find("ann@example.com").status == "active"  # untouched
