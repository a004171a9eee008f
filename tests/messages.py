"""One sample Message for provider and MIME tests; each test file changes what it needs
with ``dataclasses.replace``."""

from __future__ import annotations

from pipeline.message import Message

SITE = "hingestrength.example.com"
LIST_ID = f"Hinge Strength <updates.{SITE}>"


def sample_message(i: int = 0, **changes: object) -> Message:
    """Reader ``i``'s copy of a small campaign email, with every header we send."""
    fields: dict[str, object] = {
        "to_email": f"reader{i}@example.com",
        "to_name": f"Reader {i}",
        "from_addr": f"Coach Sam <coach@{SITE}>",
        "subject": "Master the Hip Hinge",
        "html": f"<p>Hi Reader {i}</p>",
        "text": f"Hi Reader {i}",
        "message_id": f"<m{i}.1700000000@{SITE}>",
        "reply_to": f"coach@{SITE}",
        "headers": {
            "List-Unsubscribe": f"<https://{SITE}/u/t{i}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": LIST_ID,
        },
        "tag": "hip-hinge",
        "metadata": {"campaign": "hip-hinge"},
    }
    fields.update(changes)
    return Message(**fields)  # type: ignore[arg-type]
