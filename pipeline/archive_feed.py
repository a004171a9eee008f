"""The archive's Atom 1.0 feed (RFC 4287): the newest issues with their full content.

Built with ElementTree, so every value is escaped and the XML well formed whatever an
author writes. Entry ids are tag URIs (RFC 4151) made of the site's domain, the day
the issue first went out and its slug: they stay the same when the archive moves to
another address, so feed readers never show an issue twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from pipeline.settings import Settings

ATOM = "http://www.w3.org/2005/Atom"
FEED_ENTRIES = 20  # the newest issues in the feed (the index pages list them all)
GENERATOR = "newsletter-pipeline"


@dataclass(frozen=True)
class Entry:
    slug: str
    title: str
    url: str  # the issue page, absolute
    published: dt.datetime
    summary: str
    content: str  # HTML with absolute links
    topic: str  # key
    topic_name: str


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def entry_id(settings: Settings, entry: Entry) -> str:
    day = entry.published.astimezone(dt.UTC).date().isoformat()
    return f"tag:{settings.site_domain},{day}:{entry.slug}"


def atom_feed(settings: Settings, entries: list[Entry], *, empty_updated: dt.datetime) -> bytes:
    """The feed of ``entries`` (newest first). ``empty_updated`` stands in for the
    feed's ``updated`` while there is no entry."""
    feed = ET.Element("feed", {"xmlns": ATOM, "xml:lang": "en"})
    home = f"{settings.archive_url}/"
    newest = entries[0].published if entries else empty_updated
    _text(feed, "title", settings.site_name)
    _text(feed, "subtitle", f"Every issue of {settings.site_name}, as sent")
    _text(feed, "id", home)
    _text(feed, "updated", rfc3339(newest))
    _link(feed, f"{settings.archive_url}/feed.xml", "self", "application/atom+xml")
    _link(feed, home, "alternate", "text/html")
    author = ET.SubElement(feed, "author")
    _text(author, "name", settings.site_name)
    _text(author, "uri", f"{settings.site_url}/")
    _text(feed, "generator", GENERATOR)
    for entry in entries:
        _entry(feed, settings, entry)
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"


def _entry(feed: ET.Element, settings: Settings, entry: Entry) -> None:
    node = ET.SubElement(feed, "entry")
    _text(node, "title", entry.title)
    _text(node, "id", entry_id(settings, entry))
    _link(node, entry.url, "alternate", "text/html")
    _text(node, "published", rfc3339(entry.published))
    _text(node, "updated", rfc3339(entry.published))
    ET.SubElement(node, "category", {"term": entry.topic, "label": entry.topic_name})
    _text(node, "summary", entry.summary)
    content = _text(node, "content", entry.content)
    content.set("type", "html")


def _text(parent: ET.Element, name: str, value: str) -> ET.Element:
    node = ET.SubElement(parent, name)
    node.text = value
    return node


def _link(parent: ET.Element, href: str, rel: str, kind: str) -> None:
    ET.SubElement(parent, "link", {"href": href, "rel": rel, "type": kind})
