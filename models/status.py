"""Resource status, the seed's vocabulary, and how it reads as a Prefect state name."""

from enum import StrEnum


class Status(StrEnum):
    PENDING = "PENDING"
    INPROGRESS = "INPROGRESS"
    ACTIVE = "ACTIVE"
    ERRORED = "ERRORED"
    DELETING = "DELETING"
    DELETED = "DELETED"

    @property
    def state_name(self) -> str:
        """The flow-run state name that mirrors this status (`Completed(name="Active")`)."""
        return self.value.capitalize() if self is not Status.INPROGRESS else "InProgress"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
