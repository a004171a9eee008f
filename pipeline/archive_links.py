"""Which sent modules the public archive shows, and where each one's page is.

Kept apart from the archive's builder so that rendering an email (its "View in your
browser" link, :func:`pipeline.render.web_version_url`) can ask without loading it.
"""

from __future__ import annotations

from pipeline.content import ContentModule
from pipeline.sequences import is_step, step_name
from pipeline.settings import Settings


def in_archive(module: ContentModule, *, step: bool) -> bool:
    """Whether a sent module belongs in the archive: front matter ``archive: false``
    keeps a module out; a sequence step is in only with ``archive: true``."""
    return module.archive is True if step else module.archive is not False


def campaign_slug(settings: Settings, module: ContentModule) -> str:
    """The module's campaign slug: ``hip-hinge``, or ``welcome/hello`` for a step."""
    if is_step(settings, module.path):
        return f"{module.path.parent.name}/{step_name(module.path)}"
    return module.slug


def archive_slug(settings: Settings, module: ContentModule) -> str | None:
    """The module's folder in the archive (its campaign slug), or None when it is kept
    out."""
    if not in_archive(module, step=is_step(settings, module.path)):
        return None
    return campaign_slug(settings, module)


def issue_url(settings: Settings, module: ContentModule) -> str | None:
    """The public address of the module's page in the archive, once it is sent."""
    slug = archive_slug(settings, module)
    return f"{settings.archive_url}/{slug}/" if slug else None
