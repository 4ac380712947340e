"""Exceptions raised by the sandbox layer; callers map them to run statuses."""

from __future__ import annotations


class SandboxError(Exception):
    """Base class: something in the sandbox infrastructure (not the user's code) went wrong."""


class InvalidRequest(SandboxError, ValueError):
    """A request or limit is malformed; `field` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class EngineUnavailable(SandboxError):
    """The engine cannot run here (runsc missing, no cgroups, image not built); says how to fix it."""


class ImageError(SandboxError):
    """The root filesystem image is missing or could not be built."""
