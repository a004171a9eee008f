"""Which sent modules the public archive shows, and where each one's page is.

Kept apart from the archive's builder so that rendering an email (its "View in your
browser" link, :func:`pipeline.render.web_version_url`) can ask without loading it.
"""

from __future__ import annotations

from pipeline.content import ContentModule
from pipeline.sequences import is_step
from pipeline.settings import Settings


def in_archive(module: ContentModule, *, step: bool) -> bool:
    """Whether a sent module belongs in the archive: front matter ``archive: false``
    keeps a module out; a sequence step is in only with ``archive: true``."""
    return module.archive is True if step else module.archive is not False


def archive_slug(settings: Settings, module: ContentModule) -> str | None:
    """The module's folder in the archive (``hip-hinge``, ``welcome/hello`` for a step of
    the ``welcome`` sequence: its campaign slug), or None when it is kept out."""
    step = is_step(settings, module.path)
    if not in_archive(module, step=step):
        return None
    return f"{module.path.parent.name}/{module.slug}" if step else module.slug


def issue_url(settings: Settings, module: ContentModule) -> str | None:
    """The public address of the module's page in the archive, once it is sent."""
    slug = archive_slug(settings, module)
    return f"{settings.archive_url}/{slug}/" if slug else None
