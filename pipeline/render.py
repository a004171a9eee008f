"""Content module -> compiled campaign (once) -> personalised Message (per recipient).

Compiling runs Jinja2 (StrictUndefined), MJML (mjml-python, the Rust MRML engine) and
css-inline once per campaign. Personal fields are left in the compiled HTML and text as
markers and split into literal parts, so personalising a recipient is a few escapes
and two joins.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email import quoprimime
from html import escape
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import mjml
import orjson
from markupsafe import Markup

from pipeline.archive_links import campaign_slug, issue_url
from pipeline.content import ContentModule
from pipeline.errors import TemplateError
from pipeline.images import Size, image_size
from pipeline.markdown import Body, is_remote, render_body
from pipeline.message import Message, list_unsubscribe
from pipeline.message_ids import CampaignIds, MessageIds
from pipeline.palette import load_palette
from pipeline.settings import ALL_TOPICS, Settings
from pipeline.textpart import underline, wrap_text

PERSONAL_FIELDS = (
    "first_name",
    "name",
    "email",
    "unsubscribe_url",
    "preferences_url",
)
MARKER = "%%nl:{}%%"
ENCODINGS = frozenset({"json", "mime"})
MARKER_RE = re.compile(r"%%nl:([a-z_]+)%%")
INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
# The inbox row shows the preheader and then whatever text comes next in the email
# ("View in your browser ..."); invisible characters after it fill the row instead.
PREVIEW_CHARS = 150
PREHEADER_PAD = "&#847;&zwnj;&nbsp;"
HYPHENATED_RE = re.compile(r"(?<![\w-])(\w+(?:-\w+)+)(?![\w-])")


class _Personal:
    """``p`` in templates: each known field renders as a marker filled per recipient."""

    def __init__(self, markup: bool) -> None:
        wrap: Callable[[str], str] = Markup if markup else str
        for name in PERSONAL_FIELDS:
            setattr(self, name, wrap(MARKER.format(name)))


@dataclass(frozen=True, slots=True)
class Recipient:
    """Whoever a campaign goes to. ``token`` signs their unsubscribe/preferences links."""

    id: int | str
    email: str
    name: str = ""
    token: str = ""


@functools.lru_cache(maxsize=8)
def template_env(templates_dir: Path) -> jinja2.Environment:
    """Jinja environment for ``templates/email``: strict, HTML-escaped for .mjml.j2."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir / "email"),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml.j2", "html.j2")),
        keep_trailing_newline=True,
    )
    env.filters["underline"] = underline
    env.filters["nobreak_hyphens"] = nobreak_hyphens
    return env


def nobreak_hyphens(text: str) -> Markup:
    """Short hyphenated words kept on one line ("8-Week" never breaks as "8-" / "Week")."""

    def keep(found: re.Match[str]) -> str:
        word = found.group(1)
        return f'<span style="white-space:nowrap">{word}</span>' if len(word) <= 14 else word

    return Markup(HYPHENATED_RE.sub(keep, str(escape(text, quote=False))))


def preheader_pad(preheader: str) -> Markup:
    """Zero-width and no-break spaces after the preheader, up to ~150 characters."""
    return Markup(PREHEADER_PAD * max(0, PREVIEW_CHARS - len(preheader)))


def style_context(settings: Settings, preheader: str) -> dict[str, Any]:
    """What every email template needs for its look: the palette and the preheader pad."""
    palette = load_palette(settings.templates_dir)
    return {
        "color": palette.light,
        "dark": palette.dark,
        "preheader_pad": preheader_pad(preheader),
    }


def web_version_url(settings: Settings, module: ContentModule) -> str:
    """Where "View in your browser" goes: the web version of the email.

    The issue's page in the public archive (``[site] archive_url``; by default the web
    app's ``/archive/``, there the moment the first copy is sent); the web app's
    ``/view/<slug>`` for a module or step the archive leaves out."""
    found = issue_url(settings, module)
    return found or f"{settings.base_url}/view/{campaign_slug(settings, module)}"


def render_template(settings: Settings, name: str, context: dict[str, Any]) -> str:
    """Render one template; errors name the template file and line."""
    env = template_env(settings.templates_dir)
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        path = exc.filename or str(settings.templates_dir / "email" / name)
        raise TemplateError(path, exc.lineno, exc.message or "syntax error") from exc
    except jinja2.TemplateNotFound as exc:
        path = str(settings.templates_dir / "email" / exc.name)
        raise TemplateError(path, None, "template not found") from exc
    except (jinja2.UndefinedError, jinja2.TemplateRuntimeError) as exc:
        # e.g. an unknown filter inside an {% if %}: Jinja only finds it when it runs
        path, line = _template_frame(exc, settings.templates_dir / "email" / name)
        raise TemplateError(path, line, exc.message or "undefined value") from exc


def _template_frame(exc: BaseException, default: Path) -> tuple[str, int | None]:
    """The innermost template file and line in a Jinja traceback."""
    found: tuple[str, int | None] = (str(default), None)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def compile_mjml(source: str, origin: str) -> str:
    """MJML -> HTML with the CSS inlined (MRML ignores mj-style inline="inline")."""
    try:
        html = mjml.mjml2html(source)
    except Exception as exc:  # noqa: BLE001 - MRML raises plain exceptions
        raise TemplateError(origin, None, f"MJML: {exc}") from exc
    return INLINER.inline(html)


def compile_email(settings: Settings, source: str, origin: str) -> str:
    """MJML -> HTML, CSS inlined, then the dark-mode styles added to the head as they
    are (they must stay a <style> block; MRML and the inliner never see them)."""
    html = compile_mjml(source, origin)
    css = dark_mode_css(settings)
    head_end = html.find("</head>")
    if not css or head_end < 0:
        return html
    return f"{html[:head_end]}<style>{css}</style>{html[head_end:]}"


# (id(template), id(palette)) -> (template, palette, css): both kept alive, so an id is
# never reused while cached; a changed file gives a new template or palette object.
_DARK_CSS: dict[tuple[int, int], tuple[object, object, str]] = {}


def dark_mode_css(settings: Settings) -> str:
    """The dark-mode CSS of every email (``templates/email/dark.css.j2`` with the
    palette's ``[dark]`` colours), rendered once per version of those two files."""
    palette = load_palette(settings.templates_dir)
    name = "dark.css.j2"
    try:
        template = template_env(settings.templates_dir).get_template(name)
    except jinja2.TemplateNotFound:
        return ""  # templates from before dark mode: the email stays light only
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.filename or name, exc.lineno, exc.message or "syntax") from exc
    key = (id(template), id(palette))
    hit = _DARK_CSS.get(key)
    if hit is None:
        css = " ".join(render_template(settings, name, {"dark": palette.dark}).split())
        if len(_DARK_CSS) > 16:
            _DARK_CSS.clear()
        hit = _DARK_CSS[key] = (template, palette, css)
    return hit[2]


class Template:
    """Compiled text with personal fields: literal parts and field names, alternating.

    Filling it is one list copy and one join (no parsing per recipient), so a subscriber
    can type anything, braces included, into their name.
    """

    def __init__(self, text: str) -> None:
        pieces = MARKER_RE.split(text)
        self.parts = pieces
        self.fields = [(i, pieces[i]) for i in range(1, len(pieces), 2)]
        unknown = {name for _, name in self.fields} - set(PERSONAL_FIELDS)
        if unknown:
            raise ValueError(f"unknown personal field(s): {', '.join(sorted(unknown))}")

    @functools.cached_property
    def json_parts(self) -> list[bytes]:
        """The parts JSON-escaped, once per campaign (on first use): JSON providers embed
        the filled result as is (orjson.Fragment) instead of escaping ~20 KB per recipient."""
        return [b'"'] + [json_inner(p) for p in self.parts] + [b'"']

    @functools.cached_property
    def qp_parts(self) -> list[bytes]:
        """The parts quoted-printable, each on lines of its own (soft breaks between), so
        the MIME writer encodes only the few personal values per recipient."""
        return [qp_inner(p) for p in self.parts]

    def fill(self, values: dict[str, str]) -> str:
        out = self.parts.copy()
        for index, name in self.fields:
            out[index] = values[name]
        return "".join(out)

    def fill_qp(self, values: dict[str, bytes]) -> bytes:
        """The filled text as a quoted-printable body (CRLF lines of at most 76)."""
        out = self.qp_parts.copy()
        for index, name in self.fields:
            out[index] = values[name]
        return b"".join(out)

    def fill_json(self, values: dict[str, bytes]) -> list[bytes]:
        """The filled text as a JSON string literal (quotes included), in pieces: the
        template's parts, shared by every recipient, and this recipient's values (already
        JSON-escaped, see :func:`json_inner`). Joined only when written to the wire, so a
        batch in flight holds ~1 KB per message instead of a copy of the whole email."""
        out = self.json_parts.copy()
        for index, name in self.fields:
            out[index + 1] = values[name]
        return out


HTML_SPECIAL = re.compile(r"[&<>\"']")
JSON_SPECIAL = re.compile(r'["\\\x00-\x1f]')


def html_escape(text: str) -> str:
    """``html.escape`` with a fast path for the common case of nothing to escape."""
    return escape(text, quote=True) if HTML_SPECIAL.search(text) else text


SOFT_BREAK = b"=\r\n"


def qp_inner(text: str) -> bytes:
    """``text`` quoted-printable on lines of at most 75, ending where a next part can
    start a line of its own (a soft break, unless it ends with a line break)."""
    if not text:
        return b""
    raw = text.encode("utf-8").decode("latin-1")
    encoded = quoprimime.body_encode(raw, maxlinelen=75, eol="\r\n").encode("ascii")
    return encoded if text.endswith("\n") else encoded + SOFT_BREAK


def json_inner(text: str) -> bytes:
    """``text`` as the inside of a JSON string literal."""
    return orjson.dumps(text)[1:-1] if JSON_SPECIAL.search(text) else text.encode()


@dataclass
class Compiled:
    """A content module compiled once, ready to personalise for any recipient."""

    module: ContentModule
    settings: Settings
    subject: str
    html_template: Template
    text_template: Template
    html_size: int  # bytes of the HTML with sample personal fields
    body: Body
    static_headers: dict[str, str] = field(default_factory=dict)

    def personalize(
        self,
        recipient: Recipient,
        *,
        message_id: str | None = None,
        encodings: frozenset[str] = ENCODINGS,
        plain: bool = True,
    ) -> Message:
        """The Message for one recipient; anything they typed is HTML-escaped.

        ``encodings`` says which pre-encoded bodies to add ("json", "mime"): the ones
        the provider at hand reads (``Provider.encodings``). ``plain=False`` leaves out
        the plain ``html``/``text`` strings, for a provider that reads only those: half
        the memory of every batch in flight.
        """
        s = self.settings
        links = self.links(recipient.token)
        first = recipient.name.split()[0] if recipient.name.strip() else "there"
        text_fields = {"first_name": first, "name": recipient.name, "email": recipient.email}
        text_fields.update(links)
        html_fields = {k: html_escape(v) for k, v in text_fields.items()}
        headers = dict(self.static_headers)
        headers["List-Unsubscribe"] = list_unsubscribe(
            links["unsubscribe_url"], s.unsubscribe_email, recipient.token
        )
        mid = message_id or self.message_ids.make(recipient.id)
        return Message(
            to_email=recipient.email,
            to_name=recipient.name,
            from_addr=s.from_addr,
            subject=self.subject,
            html=self.html_template.fill(html_fields) if plain else "",
            text=self.text_template.fill(text_fields) if plain else "",
            **self._encoded(html_fields, text_fields, encodings),
            message_id=mid,
            reply_to=s.reply_to,
            headers=headers,
            tag=self.module.slug,
            metadata={"campaign": self.module.slug, "recipient": str(recipient.id)},
        )

    def _encoded(
        self, html: dict[str, str], text: dict[str, str], encodings: frozenset[str]
    ) -> dict[str, bytes | list[bytes]]:
        found: dict[str, bytes | list[bytes]] = {}
        if "json" in encodings:
            found["html_json"] = self.html_template.fill_json(_json_values(html))
            found["text_json"] = self.text_template.fill_json(_json_values(text))
        if "mime" in encodings:
            found["html_qp"] = self.html_template.fill_qp(_qp_values(html))
            found["text_qp"] = self.text_template.fill_qp(_qp_values(text))
        return found

    def links(self, token: str) -> dict[str, str]:
        base = self.settings.base_url
        return {
            "unsubscribe_url": f"{base}/unsubscribe/{token}",
            "preferences_url": f"{base}/preferences/{token}",
        }

    @functools.cached_property
    def message_ids(self) -> CampaignIds:
        """Message-IDs of this campaign (the key is read on first use, not at compile)."""
        ids = MessageIds(self.settings.secret_key(), self.settings.site_domain)
        return ids.for_campaign(self.module.slug, self.module.topic)


def _json_values(values: dict[str, str]) -> dict[str, bytes]:
    return {k: json_inner(v) for k, v in values.items()}


def _qp_values(values: dict[str, str]) -> dict[str, bytes]:
    return {k: qp_inner(v) for k, v in values.items()}


def image_sizer(settings: Settings) -> Callable[[str], Size | None]:
    """The pixel size of a local image under content/ (None for remote ones)."""

    def size(ref: str) -> Size | None:
        return None if is_remote(ref) else image_size(settings.content_dir / ref)

    return size


def hero_size(module: ContentModule, settings: Settings) -> Size | None:
    """The hero's display size: measured from a local file, else from the front matter."""
    if not module.image:
        return None
    if module.image_width:
        return Size(module.image_width, module.image_height).fit()
    found = image_sizer(settings)(module.image)
    return found.fit() if found else None


def asset_resolver(settings: Settings, *, preview: bool) -> Callable[[str], str]:
    """Local images: file:// URIs in a preview, the web app's /media/ URL in a send."""

    def resolve(ref: str) -> str:
        if is_remote(ref):
            return ref
        if preview:
            return (settings.content_dir / ref).resolve().as_uri()
        return f"{settings.base_url}/media/{ref}"

    return resolve


def topic_reason(settings: Settings, module: ContentModule) -> str:
    if module.topic == ALL_TOPICS:  # a sequence step for every reader
        return f"You are receiving this email because you signed up at {settings.site_name}."
    topic = settings.topics[module.topic]
    return (
        f"You are receiving this email because you subscribed to {topic.name} "
        f"from {settings.site_name}."
    )


def compile_campaign(
    module: ContentModule,
    settings: Settings,
    *,
    preview: bool = False,
    assets: Callable[[str], str] | None = None,
) -> Compiled:
    """Render a content module once: Markdown, Jinja2, MJML and CSS inlining.

    Local images point at the web app's ``/media/`` (a send), at ``file://`` URIs
    (``preview``), or wherever ``assets`` says (the studio serves them itself).
    """
    resolve = assets or asset_resolver(settings, preview=preview)
    body = render_body(
        module.body,
        first_line=module.body_line,
        asset_url=resolve,
        image_size=image_sizer(settings),
    )
    hero = hero_size(module, settings)
    context = {
        **style_context(settings, module.preheader),
        "subject": module.subject,
        "preheader": module.preheader,
        "title": module.title,
        "url": module.url,
        "image": resolve(module.image) if module.image else "",
        "image_alt": module.image_alt,
        "image_width": hero.width if hero else 0,
        "image_height": hero.height if hero else 0,
        "view_url": web_version_url(settings, module),
        "cta_text": module.cta_text,
        "cta_url": module.cta_url,
        "price": module.price,
        "site_name": settings.site_name,
        "site_url": settings.site_url,
        "postal_address": settings.postal_address,
        "reason": topic_reason(settings, module),
    }
    html_context = {**context, "body": Markup(body.mjml), "p": _Personal(True)}
    mjml_src = render_template(settings, f"{module.kind}.mjml.j2", html_context)
    html = compile_email(settings, mjml_src, str(module.path))
    text = render_template(
        settings, f"{module.kind}.txt.j2", {**context, "body": body.text, "p": _Personal(False)}
    )
    text = wrap_text(text)
    return Compiled(
        module=module,
        settings=settings,
        subject=module.subject,
        html_template=Template(html),
        text_template=Template(text),
        html_size=len(html.encode("utf-8")),
        body=body,
        static_headers=static_headers(settings, module.topic, module.slug),
    )


def static_headers(settings: Settings, topic: str, campaign: str) -> dict[str, str]:
    """Headers that are the same for every recipient of a campaign."""
    name = re.sub(r'[<>"\r\n]', "", settings.site_name).strip()
    headers = {
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": f"{name} <{topic}.{settings.site_domain}>",
    }
    feedback = settings.provider_options.get("feedback_id")
    if feedback:
        headers["Feedback-ID"] = f"{campaign}:{topic}:{feedback}"
    return headers
