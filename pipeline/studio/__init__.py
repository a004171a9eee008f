"""``newsletter dev``: the author's live preview studio.

A local Flask app (like the CLI, a face of the pipeline) that shows every content
module as its readers get it, follows saves under ``content/``, ``templates/`` and
``newsletter.toml`` with server-sent events, and sends test emails through the
configured provider. It reads the subscriber store for sample readers, never writes it.

* ``catalog``: what is listed (content modules; sequence steps become one more source)
* ``readers``: sample readers and real subscribers (read-only)
* ``rendering``: one module for one reader (email, text, .eml, checks, inbox row)
* ``schemes``: the email under light or dark ``prefers-color-scheme``
* ``workspace``: settings, the change version and the render cache
* ``watcher``: watchfiles threads that bump the version on a save
* ``app``: the Flask app; ``server``: binding, browser, shutdown
"""

from __future__ import annotations

from pipeline.studio.app import create_app
from pipeline.studio.server import serve
from pipeline.studio.workspace import Workspace

__all__ = ["Workspace", "create_app", "serve"]
