"""Request bodies of large JSON batches, written from pieces instead of one copy.

A Postmark or Resend batch carries every recipient's whole email: 500 messages of ~28 KB
are a 14 MB body, and a send that hides the provider's latency keeps thousands of
messages in flight. Joined, those bodies were most of the sender's memory. Kept as
pieces (the template's parts, shared by every message of the campaign, and each
reader's few values, see ``Template.fill_json``), a batch in flight costs ~1 KB per
message; :class:`JsonBody` joins them a chunk at a time as the socket takes them, with
the exact Content-Length known up front (no chunked transfer encoding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from pipeline.message import Message, json_pieces

# Bodies smaller than this are joined and written in one go.
STREAM_OVER = 1 << 20
# Bytes handed to the socket per write when streaming.
CHUNK = 1 << 18
# A hole in a payload, filled with pieces afterwards: a raw NUL never appears in
# orjson's output otherwise (control characters in strings are escaped).
HOLE = orjson.Fragment(b"\x00")


class JsonBody:
    """A request body as a list of byte pieces: ``len()`` is its exact size, and each
    iteration writes it again from the start (a retried request sends it whole)."""

    __slots__ = ("pieces", "size")

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.size = sum(map(len, pieces))

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        chunk: list[bytes] = []
        held = 0
        for piece in self.pieces:
            chunk.append(piece)
            held += len(piece)
            if held >= CHUNK:
                yield b"".join(chunk)
                chunk, held = [], 0
        if chunk:
            yield b"".join(chunk)

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces)


def filled(payload: object, fills: Sequence[list[bytes]]) -> list[bytes]:
    """``payload`` as JSON pieces, its :data:`HOLE` values replaced in order by ``fills``."""
    parts = orjson.dumps(payload).split(b"\x00")
    if len(parts) != len(fills) + 1:
        raise ValueError(f"{len(parts) - 1} holes in the payload for {len(fills)} fills")
    out = [parts[0]]
    for fill, part in zip(fills, parts[1:], strict=True):
        out += fill
        out.append(part)
    return out


def json_array(items: Sequence[list[bytes]]) -> list[bytes]:
    """The pieces of ``[item, item, ...]``."""
    out = [b"["]
    for i, item in enumerate(items):
        if i:
            out.append(b",")
        out += item
    out.append(b"]")
    return out


def request_body(pieces: list[bytes]) -> bytes | JsonBody:
    """The body to post: joined when small, streamed from its pieces when large."""
    body = JsonBody(pieces)
    return bytes(body) if body.size < STREAM_OVER else body


def json_batch(
    messages: Sequence[Message], payload: Callable[[Message], dict[str, Any]]
) -> bytes | JsonBody:
    """The body of a batch request: a JSON array of ``payload(m)`` per message, whose two
    :data:`HOLE` values (html first, then text) are filled with the message's bodies in
    pieces (see ``Message.html_json``)."""
    return request_body(json_array([filled(payload(m), json_pieces(m)) for m in messages]))
