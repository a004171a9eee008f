"""Our Message-IDs: opaque to readers, stable per campaign and subscriber, readable by us.

``<{slug}.{topic}.{token}@{site_domain}>``, where ``token`` is 32 hex digits: the
subscriber id and a tag of the campaign, encrypted with AES under a key derived from
``NEWSLETTER_SECRET_KEY``. A reader sees no subscriber number (nothing to count the list
by, nothing to guess a neighbour's id from); the same campaign and subscriber always get
the same Message-ID, so a resumed send, Resend's idempotency key and provider webhooks
all keep matching; and a webhook's Message-ID gives back the subscriber only when it
decrypts to the campaign it names (a made-up one does not).

Campaigns sent before these ids (``<{slug}.{topic}.{subscriber id}@{domain}>``) are still
read back, so their webhooks keep working.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ID_RE = re.compile(
    r"^<?(?P<slug>.+)\.(?P<topic>[^.@<>]+)\.(?P<token>[^.@<>]+)@(?P<domain>[^<>@]+)>?$"
)
TOKEN_RE = re.compile(r"[0-9a-f]{32}\Z")


@dataclass(frozen=True)
class OurMessageId:
    slug: str
    topic: str
    subscriber_id: int
    domain: str


class MessageIds:
    """Makes and reads the Message-IDs of one site (one secret key, one domain)."""

    def __init__(self, secret: str, domain: str) -> None:
        self.key = hashlib.sha256(b"newsletter message-id\x00" + secret.encode()).digest()[:16]
        self.domain = domain
        self._local = threading.local()

    def _cipher(self) -> Cipher[modes.ECB]:
        return Cipher(algorithms.AES(self.key), modes.ECB())

    def encrypt(self, block: bytes) -> bytes:
        # One encryptor per thread: an encryption context is not shared across threads.
        encryptor = getattr(self._local, "encryptor", None)
        if encryptor is None:
            encryptor = self._local.encryptor = self._cipher().encryptor()
        return encryptor.update(block)

    def for_campaign(self, slug: str, topic: str) -> CampaignIds:
        return CampaignIds(self, slug, topic)

    def make(self, slug: str, topic: str, recipient: int | str) -> str:
        return self.for_campaign(slug, topic).make(recipient)

    def parse(self, message_id: str) -> OurMessageId | None:
        """Campaign and subscriber of a Message-ID we made, else None."""
        found = ID_RE.match(message_id.strip())
        if not found or found["domain"].lower() != self.domain.lower():
            return None
        slug, topic, token = found["slug"].lstrip("<"), found["topic"], found["token"]
        if token.isdigit() and len(token) < 20:  # sent before Message-IDs were opaque
            return OurMessageId(slug, topic, int(token), self.domain)
        if not TOKEN_RE.match(token):
            return None
        decryptor = self._cipher().decryptor()
        block = decryptor.update(bytes.fromhex(token)) + decryptor.finalize()
        if block[8:] != campaign_tag(slug, topic):
            return None
        return OurMessageId(slug, topic, int.from_bytes(block[:8], "big"), self.domain)


class CampaignIds:
    """Message-IDs of one campaign: the per-recipient part is one AES block (~0.5 us)."""

    def __init__(self, ids: MessageIds, slug: str, topic: str) -> None:
        self.ids = ids
        self.prefix = f"<{slug}.{topic}."
        self.suffix = f"@{ids.domain}>"
        self.tag = campaign_tag(slug, topic)

    def make(self, recipient: int | str) -> str:
        """The Message-ID for a subscriber id; a name such as "preview" stays readable."""
        if isinstance(recipient, int):
            token = self.ids.encrypt(recipient.to_bytes(8, "big") + self.tag).hex()
            return f"{self.prefix}{token}{self.suffix}"
        return f"{self.prefix}{recipient}{self.suffix}"


def campaign_tag(slug: str, topic: str) -> bytes:
    """8 bytes naming a campaign, the second half of every token's plaintext."""
    return hashlib.blake2b(f"{slug}\x00{topic}".encode(), digest_size=8).digest()
