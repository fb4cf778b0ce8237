"""Pieces shared by the kinds whose resource is a directory tree."""

import os
from abc import abstractmethod
from pathlib import Path

from sqlalchemy.orm import Session

from storeflow.models import repository
from storeflow.models.errors import NotFound, Refused
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Status
from storeflow.tasks import fstools
from storeflow.tasks.lifecycle import ResourceOperation


class DirectoryBuilder(ResourceOperation):
    """Create a directory resource; a failure removes the tree it made.

    `perform` calls `made(path)` as soon as the tree exists, so a rollback
    (of a half-done perform, or after post failed) removes exactly that tree
    and never one that was there before.
    """

    _made: Path | None = None

    def made(self, path: Path) -> Path:
        self._made = path
        return path

    def rollback(self, resource: ResourceView) -> None:
        if self._made is not None:
            fstools.remove_tree(self._made)
            self._made = None


class DirectoryUpdater(ResourceOperation):
    """Update a directory resource; a rename is checked up front and undone on rollback."""

    _renamed: tuple[Path, Path] | None = None

    def check_rename(self, session: Session, new_name: str, target: Path) -> None:
        """Refuse a new name taken in the database or on disk."""
        try:
            repository.find(session, self.kind, new_name)
        except NotFound:
            pass
        else:
            raise Refused(f"{self.kind} {new_name!r} already exists")
        if os.path.lexists(target):
            raise Refused(f"{target} already exists on disk")

    def rename_tree(self, path: Path, target: Path, new_name: str) -> Path:
        # Checked again here: os.rename would silently replace an empty directory.
        if os.path.lexists(target):
            raise FileExistsError(f"{target} already exists")
        path.rename(target)
        self._renamed = (path, target)
        self.new_name = new_name
        return target

    def rollback(self, resource: ResourceView) -> None:
        if self._renamed is not None:
            original, renamed = self._renamed
            renamed.rename(original)
            self._renamed = None


class DirectoryDeleter(ResourceOperation):
    """Delete a directory resource in two phases.

    perform moves the tree aside under a hidden name (instant and
    reversible); only when the whole operation has committed is it removed.
    A failure anywhere puts the tree back where it was.
    """

    _aside: Path | None = None

    @abstractmethod
    def directory(self, resource: ResourceView) -> Path:
        """The tree to delete (validated to stay inside storeflow's root)."""

    def perform(self, resource: ResourceView) -> Status:
        path = self.directory(resource)
        if path.exists() or path.is_symlink():
            aside = fstools.temp_sibling(path, "deleting")
            path.rename(aside)
            self._aside = aside
        return Status.ACTIVE

    def rollback(self, resource: ResourceView) -> None:
        if self._aside is not None and self._aside.exists():
            self._aside.rename(self.directory(resource))
            self._aside = None

    def commit(self, resource: ResourceView) -> None:
        if self._aside is not None:
            fstools.remove_tree(self._aside)
