"""Errors a user can act on. Each says what was refused and why."""


class StoreflowError(Exception):
    """Base class: every error storeflow raises on purpose."""


class Refused(StoreflowError):
    """The operation was refused before it touched anything."""


class InvalidInput(Refused, ValueError):
    """A definition, name, path or option was rejected; nothing was changed."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class NotFound(Refused):
    def __init__(self, message: str, kind: str | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.name = kind, name  # what was looked for, when it was a named resource


class NameTaken(Refused):
    pass


class EtagConflict(Refused):
    pass


class Busy(Refused):
    pass


class OperationFailed(StoreflowError):
    """The operation ran and failed; the resource is ERRORED."""
