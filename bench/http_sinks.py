"""Provider-shaped HTTP servers on 127.0.0.1 that accept batches and can lose the answer.

Postmark (``POST /email/batch``, ``GET /messages/outbound``) and Mailgun
(``POST /v3/<domain>/messages``, ``GET /v3/<domain>/events``) as their documentation
shows them, keeping what they accepted so a lookup can be answered. With
``fault`` set, every ``fault_every``-th send (up to ``fault_limit`` of them) is
*accepted* and then its answer is lost the way networks lose answers:

- ``reset``: the connection is reset (RST) after the request was read;
- ``504``: a gateway timeout answer;
- ``hang``: no answer for ``hang`` seconds, longer than the client waits.

``search_lag`` delays when an accepted message shows up in a lookup. ``latency`` (seconds)
is how long the API takes before answering each send request, like a real provider's
round trip; each connection has its own thread, so concurrent requests wait together.
``count_only`` still parses every batch and answers each recipient as documented (its
own ``To``, a fresh ``MessageID``) but keeps only counts, for benchmarks of any size (no
lookups then). ``GET /_received`` reports ``{"total", "requests", "faults", "lookups",
"to": {addr: times}}``. Only ever binds 127.0.0.1.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

SUBMITTED = "2026-11-23T12:00:00.0000000Z"
FAULTS = ("reset", "504", "hang")


@dataclass
class Accepted:
    """One message a sink accepted: what a lookup can find."""

    to: str
    message_id: str  # ours (metadata / user variable)
    provider_id: str
    batch: str
    at: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Faults:
    kind: str = ""
    every: int = 0
    limit: int = 0
    hang: float = 30.0
    done: int = 0

    def due(self, request_number: int) -> bool:
        return bool(
            self.kind
            and self.every
            and request_number % self.every == 0
            and (not self.limit or self.done < self.limit)
        )


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        *,
        count_only: bool = False,
        throttle_every: int = 0,
        faults: Faults | None = None,
        search_lag: float = 0.0,
        latency: float = 0.0,
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.count_only = count_only
        self.throttle_every = throttle_every
        self.faults = faults or Faults()
        self.search_lag = search_lag
        self.latency = latency  # seconds before answering a send, as a real API takes
        self.in_flight = 0  # send requests being answered right now
        self.most_in_flight = 0
        self.total = 0
        self.requests = 0
        self.lookups = 0
        self.to: Counter[str] = Counter()
        self.accepted: list[Accepted] = []

    def keep(self, items: list[Accepted]) -> None:
        with self.lock:
            self.total += len(items)
            for item in items:
                self.to[item.to] += 1
            if not self.count_only:
                self.accepted.extend(items)

    def count(self, to: list[str]) -> None:
        with self.lock:
            self.total += len(to)
            self.to.update(to)

    def visible(self) -> list[Accepted]:
        """What a lookup sees now (the provider's search lags behind)."""
        cutoff = time.time() - self.search_lag
        with self.lock:
            self.lookups += 1
            return [a for a in self.accepted if a.at <= cutoff]

    def report(self, with_to: bool = True) -> dict[str, Any]:
        """Counts; ``to`` (every address and how often) unless ``with_to`` is false,
        then only how many addresses and the most any one got."""
        with self.lock:
            found = {
                "total": self.total,
                "requests": self.requests,
                "faults": self.faults.done,
                "lookups": self.lookups,
                "most_in_flight": self.most_in_flight,
                "in_flight": self.in_flight,
                "distinct": len(self.to),
                "most_to_one": max(self.to.values(), default=0),
            }
            return {**found, "to": dict(self.to)} if with_to else found


class SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs
    server: SinkServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def reply(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        raw = orjson.dumps(data)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def count_request(self) -> tuple[bool, bool]:
        """(throttled, fault due) for this send request, after the server's latency."""
        server = self.server
        with server.lock:
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            if server.latency:
                time.sleep(server.latency)
        finally:
            with server.lock:
                server.in_flight -= 1
        with self.server.lock:
            self.server.requests += 1
            n = self.server.requests
            every = self.server.throttle_every
            if every and n % every == 0:
                return True, False
            due = self.server.faults.due(n)
            if due:
                self.server.faults.done += 1
            return False, due

    def lose_answer(self) -> None:
        """The batch was accepted; now lose the answer."""
        kind = self.server.faults.kind
        if kind == "504":
            self.reply(504, {"message": "Gateway Timeout"})
            return
        if kind == "hang":
            time.sleep(self.server.faults.hang)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # RST: the client sees a reset after its request was read
        self.close_connection = True

    def query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}


class PostmarkHandler(SinkHandler):
    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/_received":
            return self.reply(200, self.server.report("counts" not in self.query()))
        if path == "/messages/outbound":
            return self.search()
        return self.reply(404, {"ErrorCode": 404, "Message": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        body = self.body()
        if self.path != "/email/batch":
            return self.reply(404, {"ErrorCode": 404, "Message": "not found"})
        if not self.headers.get("X-Postmark-Server-Token"):
            return self.reply(
                401, {"ErrorCode": 10, "Message": "No Account or Server API tokens were supplied"}
            )
        throttled, fault = self.count_request()
        if throttled:
            return self.reply(
                429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, {"Retry-After": "0"}
            )
        batch = orjson.loads(body)
        if self.server.count_only:
            items = [_postmark_item(m) for m in batch]
            self.server.count([m["To"] for m in batch])
            return self.reply(200, items)
        now = time.time()
        items = [_postmark_item(m) for m in batch]
        self.server.keep(
            [
                Accepted(
                    m["To"],
                    (m.get("Metadata") or {}).get("message_id", ""),
                    item["MessageID"],
                    (m.get("Metadata") or {}).get("batch", ""),
                    now,
                    {"Metadata": m.get("Metadata") or {}, "Subject": m.get("Subject", "")},
                )
                for m, item in zip(batch, items, strict=True)
            ]
        )
        if fault:
            return self.lose_answer()
        self.reply(200, items)

    def search(self) -> None:
        """``GET /messages/outbound``: count and offset required; metadata_* filters."""
        q = self.query()
        try:
            count, offset = int(q["count"]), int(q["offset"])
        except (KeyError, ValueError):
            return self.reply(422, {"ErrorCode": 300, "Message": "count and offset are required"})
        if count > 500 or count + offset > 10_000:
            return self.reply(422, {"ErrorCode": 300, "Message": "count/offset out of range"})
        filters = {k[len("metadata_") :]: v for k, v in q.items() if k.startswith("metadata_")}
        found = [
            a
            for a in reversed(self.server.visible())  # newest first, as Postmark lists them
            if all(a.extra["Metadata"].get(k) == v for k, v in filters.items())
            and (not q.get("recipient") or q["recipient"] in a.to)
        ]
        page = found[offset : offset + count]
        self.reply(
            200,
            {
                "TotalCount": len(found),
                "Messages": [
                    {
                        "Tag": "",
                        "MessageID": a.provider_id,
                        "MessageStream": "broadcast",
                        "To": [{"Email": a.to, "Name": None}],
                        "Cc": [],
                        "Bcc": [],
                        "Recipients": [a.to],
                        "ReceivedAt": SUBMITTED,
                        "From": "",
                        "Subject": a.extra["Subject"],
                        "Attachments": [],
                        "Status": "Sent",
                        "TrackOpens": False,
                        "TrackLinks": "None",
                        "Metadata": a.extra["Metadata"],
                        "Sandboxed": False,
                    }
                    for a in page
                ],
            },
        )


def _postmark_ok(to: str) -> dict[str, Any]:
    return {
        "To": to,
        "SubmittedAt": SUBMITTED,
        "MessageID": str(uuid.uuid4()),
        "ErrorCode": 0,
        "Message": "OK",
    }


def _postmark_item(message: dict[str, Any]) -> dict[str, Any]:
    return _postmark_ok(message["To"])


class MailgunHandler(SinkHandler):
    """``POST /v3/<domain>/messages`` (multipart, recipient-variables) and the Events API."""

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/_received":
            return self.reply(200, self.server.report("counts" not in self.query()))
        if path.startswith("/v3/") and "/events" in path:
            return self.events(path)
        return self.reply(404, {"message": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        body = self.body()
        if not (self.path.startswith("/v3/") and self.path.endswith("/messages")):
            return self.reply(404, {"message": "not found"})
        if not self.headers.get("Authorization", "").startswith("Basic "):
            return self.reply(401, {"message": "Invalid private key"})
        throttled, fault = self.count_request()
        if throttled:
            return self.reply(429, {"message": "Too many requests"}, {"Retry-After": "0"})
        fields = _form_fields(self.headers.get("Content-Type", ""), body)
        variables = json.loads(fields.get("recipient-variables", ["{}"])[0])
        batch_id = f"<{uuid.uuid4().hex}@sandbox.mailgun.org>"
        now = time.time()
        accepted = []
        for to in fields.get("to", []):
            address = to.rpartition("<")[2].rstrip(">") if "<" in to else to
            values = variables.get(address, {})
            message_id = fields.get("v:message_id", [""])[0]
            if message_id.startswith("%recipient."):
                message_id = values.get(message_id[len("%recipient.") : -1], "")
            batch = fields.get("v:batch", [""])[0]
            extra = {
                "from": fields.get("from", [""])[0],
                "subject": fields.get("subject", [""])[0],
            }
            accepted.append(Accepted(to, message_id, batch_id, batch, now, extra))
        self.server.keep(accepted)
        if fault:
            return self.lose_answer()
        self.reply(200, {"id": batch_id, "message": "Queued. Thank you."})

    def events(self, path: str) -> None:
        """Ascending pages of ``accepted`` events in [begin, end], filtered by from/subject;
        ``paging.next`` is an absolute URL on this host."""
        q = self.query()
        page_token = path.rpartition("/events")[2].strip("/")
        if page_token:
            q = json.loads(bytes.fromhex(page_token).decode())
        begin, end = float(q.get("begin", 0)), float(q.get("end", time.time() + 3600))
        limit = min(int(q.get("limit", 100)), 300)
        start = int(q.get("_offset", 0))
        found = [
            a
            for a in self.server.visible()
            if begin <= a.at <= end
            and (not q.get("from") or q["from"] == a.extra["from"])
            and (not q.get("subject") or q["subject"] == a.extra["subject"])
        ]
        page = found[start : start + limit]
        base = path.partition("/events")[0] + "/events"
        following = {**q, "_offset": str(start + len(page))}
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.reply(
            200,
            {
                "items": [
                    {
                        "event": "accepted",
                        "id": uuid.uuid4().hex[:22],
                        "timestamp": a.at,
                        "recipient": a.to.rpartition("<")[2].rstrip(">"),
                        "message": {"headers": {"message-id": a.provider_id.strip("<>")}},
                        "user-variables": {"message_id": a.message_id, "batch": a.batch},
                    }
                    for a in page
                ],
                "paging": {
                    "next": f"{host}{base}/{json.dumps(following).encode().hex()}",
                    "previous": f"{host}{base}/",
                },
            },
        )


def _form_fields(content_type: str, body: bytes) -> dict[str, list[str]]:
    """multipart/form-data fields (repeated names kept in order)."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, list[str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        raw = part.get_payload(decode=True) or b""  # form fields are UTF-8 (no charset given)
        fields.setdefault(str(name), []).append(raw.decode("utf-8"))
    return fields


class SendGridHandler(SinkHandler):
    """``POST /v3/mail/send`` (202, empty body) and the Email Logs API ``POST /v3/logs``."""

    def do_GET(self) -> None:  # noqa: N802
        if urlsplit(self.path).path == "/_received":
            return self.reply(200, self.server.report("counts" not in self.query()))
        return self.reply(404, {"errors": [{"message": "not found"}]})

    def do_POST(self) -> None:  # noqa: N802
        body = self.body()
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            return self.reply(401, {"errors": [{"message": "authorization required"}]})
        if self.path == "/v3/logs":
            return self.logs(json.loads(body))
        if self.path != "/v3/mail/send":
            return self.reply(404, {"errors": [{"message": "not found"}]})
        throttled, fault = self.count_request()
        if throttled:
            return self.reply(429, {"errors": [{"message": "too many requests"}]})
        data = json.loads(body)
        now = time.time()
        categories = data.get("categories") or []
        self.server.keep(
            [
                Accepted(
                    f"{to['name']} <{to['email']}>" if to.get("name") else to["email"],
                    (p.get("custom_args") or {}).get("message_id", ""),
                    f"{uuid.uuid4().hex[:22]}.filter0001",
                    (p.get("custom_args") or {}).get("batch", ""),
                    now,
                    {"categories": categories, "subject": p.get("subject", "")},
                )
                for p in data.get("personalizations", [])
                for to in p.get("to", [])
            ]
        )
        if fault:
            return self.lose_answer()
        self.send_response(202)
        self.send_header("X-Message-Id", uuid.uuid4().hex[:22])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def logs(self, request: dict[str, Any]) -> None:
        """Only the query shape the pipeline sends: ``categories IN ('...') AND ...``."""
        wanted = set()
        query = str(request.get("query", ""))
        if "categories IN (" in query:
            inside = query.split("categories IN (", 1)[1].split(")", 1)[0]
            wanted = {part.strip().strip("'") for part in inside.split(",")}
        limit = int(request.get("limit", 10))
        found = [a for a in self.server.visible() if wanted & set(a.extra["categories"])]
        self.reply(
            200,
            {
                "messages": [
                    {
                        "from_email": "coach@hingestrength.example.com",
                        "sg_message_id": a.provider_id,
                        "subject": a.extra["subject"],
                        "to_email": a.to.rpartition("<")[2].rstrip(">"),
                        "reason": "",
                        "status": "processed",
                        "sg_message_id_created_at": SUBMITTED,
                    }
                    for a in found[:limit]
                ]
            },
        )


HANDLERS: dict[str, type[SinkHandler]] = {
    "postmark": PostmarkHandler,
    "mailgun": MailgunHandler,
    "sendgrid": SendGridHandler,
}
