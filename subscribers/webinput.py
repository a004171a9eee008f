"""Request bodies, read strictly: UTF-8 or 400, known content types or 415.

Werkzeug decodes form fields leniently (bad bytes become U+FFFD); we want a clear 400
instead of storing mojibake, so url-encoded and JSON bodies are decoded here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
from flask import Request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

MAX_FIELDS = 50
MAX_DEPTH = 8  # a signup is {"email": ..., "topics": [...]}: two levels


@dataclass
class Body:
    """A parsed request body: every field as a list of strings, or a JSON object."""

    is_json: bool
    fields: dict[str, list[str]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """One field: the JSON value, or the first form value (None when absent)."""
        if self.is_json:
            return self.data.get(name)
        values = self.fields.get(name)
        return values[0] if values else None

    def get_list(self, name: str) -> Any:
        """A multi-valued field (checkboxes); JSON gives its value as is."""
        if self.is_json:
            return self.data.get(name)
        return self.fields.get(name, [])


def read_body(request: Request, *, allow_json: bool = True) -> Body:
    """Parse the body; 400 for bad encoding or shape, 413 (raised by Werkzeug) when large."""
    mimetype = request.mimetype
    raw = request.get_data(cache=True)  # respects MAX_CONTENT_LENGTH
    if mimetype == "application/json" and allow_json:
        return Body(True, data=_json_object(raw))
    if mimetype in ("application/x-www-form-urlencoded", ""):
        return Body(False, fields=_urlencoded(raw))
    if mimetype == "multipart/form-data":
        return Body(False, fields=_multipart(request))
    raise UnsupportedMediaType("send the form as application/x-www-form-urlencoded or JSON")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not valid UTF-8") from None


def _json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object, strictly: orjson refuses NaN and Infinity, numbers beyond a double
    (a 5000-digit number; the json module would raise a bare ValueError, a 500) and lone
    surrogates; we also refuse nesting deeper than MAX_DEPTH (no form needs it)."""
    try:
        data = orjson.loads(_text(raw)) if raw else None
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the JSON body must be an object")
    if _too_deep(data, MAX_DEPTH):
        raise BadRequest(f"the JSON body is nested too deeply (more than {MAX_DEPTH} levels)")
    return data


def _too_deep(value: Any, allowed: int) -> bool:
    """Whether ``value`` nests more than ``allowed`` levels of objects and arrays."""
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return False
    return allowed <= 0 or any(_too_deep(child, allowed - 1) for child in children)


def _urlencoded(raw: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(
            _text(raw),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise BadRequest("the form data is not valid UTF-8") from None
    except ValueError:
        raise BadRequest("the form has too many fields") from None


def _multipart(request: Request) -> dict[str, list[str]]:
    fields = {key: request.form.getlist(key) for key in request.form}
    if any("\ufffd" in v for values in fields.values() for v in values):
        raise BadRequest("the form data is not valid UTF-8")
    if request.files:
        raise BadRequest("this form takes no files")
    return fields
