"""The project's one error hierarchy.

Every error says what went wrong, where, and what to do next. The CLI prints
``str(error)`` and exits 1; the web app turns them into 4xx pages. No traceback
ever reaches a user for an error of this family.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error this project raises on purpose.

    ``hint`` is the next step for the user ("set X in the environment").
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(PipelineError):
    """A setting is missing, unknown or of the wrong type."""


class LocatedError(PipelineError):
    """An error at a place in a file: ``path:line: message``."""

    def __init__(
        self, path: str, line: int | None, message: str, *, hint: str | None = None
    ) -> None:
        self.path = str(path)
        self.line = line
        self.detail = message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}", hint=hint)


class ContentError(LocatedError):
    """A content module (front matter or Markdown) is invalid."""


class TemplateError(LocatedError):
    """A Jinja2 or MJML template failed to render."""


class ProviderError(PipelineError):
    """The email provider refused the whole request (auth, account, payload).

    Keeps the HTTP status and the provider's own reason; never a secret.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        reason: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        parts = [f"{provider}: {message}" if provider else message]
        if status is not None:
            parts.append(f"(HTTP {status})")
        if reason:
            parts.append(f"- {reason}")
        super().__init__(" ".join(parts), hint=hint)


class StoreError(PipelineError):
    """The subscriber store refused an operation (bad input, missing row)."""


class SendError(PipelineError):
    """A campaign could not be sent or resumed."""
