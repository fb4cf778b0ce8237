"""Keys for storeflow's HTTP API, stored only as their SHA-256.

A submission's key grants exactly its resource (the file, and the dataset it lies
in), expires, and is revoked when the submission ends.  A user key grants the
listener API.  Keys are 32 random bytes: a plain SHA-256 is enough to store them
(there is nothing to brute-force, unlike a password).
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storeflow.models.errors import StoreflowError
from storeflow.models.submissions import ApiKeyRow
from storeflow.models.tables import utcnow


class Unauthorized(StoreflowError):
    """No key, an unknown, expired or revoked key: HTTP 401."""


class Forbidden(StoreflowError):
    """A valid key that does not grant what was asked: HTTP 403."""


@dataclass(frozen=True)
class Grant:
    key_id: int
    submission_id: str | None
    user: str | None
    file_id: int | None
    dataset: str | None
    admin: bool


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def mint_submission_key(
    session: Session,
    submission_id: str,
    *,
    file_id: int | None,
    dataset: str | None,
    lifetime: timedelta,
) -> str:
    """A new key for one submission's resource; only its hash is kept."""
    key = secrets.token_urlsafe(32)
    session.add(
        ApiKeyRow(
            key_hash=digest(key),
            submission_id=submission_id,
            file_id=file_id,
            dataset=dataset,
            expires_at=utcnow() + lifetime,
        )
    )
    session.flush()
    return key


def mint_user_key(
    session: Session, user: str, *, admin: bool = False, lifetime: timedelta | None = None
) -> str:
    key = secrets.token_urlsafe(32)
    expires = utcnow() + lifetime if lifetime else None
    session.add(ApiKeyRow(key_hash=digest(key), user=user, admin=admin, expires_at=expires))
    session.flush()
    return key


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check(session: Session, key: str | None, now: datetime | None = None) -> Grant:
    """What a presented key grants; Unauthorized if it grants nothing."""
    if not key:
        raise Unauthorized("no X-API-KEY header")
    row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest(key)))
    if row is None:
        raise Unauthorized("unknown key")
    if row.revoked_at is not None:
        raise Unauthorized("key revoked")
    if row.expires_at is not None and _aware(row.expires_at) <= (now or utcnow()):
        raise Unauthorized("key expired")
    return Grant(row.id, row.submission_id, row.user, row.file_id, row.dataset, row.admin)


def revoke_for_submission(session: Session, submission_id: str) -> int:
    """Revoke every key of a submission; the number revoked."""
    result = session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.submission_id == submission_id, ApiKeyRow.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
