"""Who may call what on storeflow's HTTP API (services/api.py).

Extractors present their submission's temporary key as `X-API-KEY`: it grants exactly
the submission's file (or its dataset's files) while the submission runs.  User keys
grant the listener API.  Each route names what it needs as a dependency or a call
here; a refusal is an exception the app answers 401 or 403.
"""

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Header, Request

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import api_keys
from storeflow.models import catalog_repository as catalog
from storeflow.models import submission_repository as submissions
from storeflow.models.api_keys import Forbidden, Grant, Unauthorized
from storeflow.models.db import session_scope
from storeflow.models.errors import NotFound
from storeflow.models.submissions import SubmissionStatus
from storeflow.tasks.submissions import dataset_id


def app_config(request: Request) -> StoreflowConfig:
    """The config the app was created with (services/api.py:create_app)."""
    config: StoreflowConfig = request.app.state.config
    return config


Config = Annotated[StoreflowConfig, Depends(app_config)]


def grant(config: Config, x_api_key: Annotated[str | None, Header()] = None) -> Grant:
    with session_scope(config.database_url) as session:
        return api_keys.check(session, x_api_key)


Granted = Annotated[Grant, Depends(grant)]


def live_submission(config: StoreflowConfig, found: Grant) -> str:
    """The submission a key belongs to, while it is still running."""
    if found.submission_id is None:
        raise Forbidden("a user key does not grant files")
    with session_scope(config.database_url) as session:
        status = submissions.get(session, found.submission_id, events=False).status
    if status is not SubmissionStatus.SUBMITTED:
        raise Unauthorized("the key's submission has ended")
    return found.submission_id


def file_grant(config: StoreflowConfig, found: Grant, file_id: str) -> catalog.FileView:
    """The file a key grants: a file submission's file, or a file of a dataset
    submission's dataset."""
    live_submission(config, found)
    refused = Forbidden(f"the key does not grant file {file_id}")
    if not file_id.isdigit():
        raise refused
    if found.file_id is not None:
        if int(file_id) != found.file_id:
            raise refused
    elif found.dataset is None:
        raise refused
    with session_scope(config.database_url) as session:
        try:
            file = catalog.get(session, int(file_id))
        except NotFound:
            raise refused from None
    if found.file_id is None and file.dataset != found.dataset:
        raise refused
    return file


def dataset_grant(config: StoreflowConfig, found: Grant, dataset: str) -> str:
    """The folder of the dataset a dataset submission's key grants (a file's key
    grants uploads into its folder, not reading the rest of it)."""
    live_submission(config, found)
    if found.file_id is not None or found.dataset is None:
        raise Forbidden(f"the key does not grant dataset {dataset}")
    if dataset != dataset_id(found.dataset):
        raise Forbidden(f"the key does not grant dataset {dataset}")
    return found.dataset


def upload_folder(config: StoreflowConfig, found: Grant, dataset: str) -> Path:
    """Where a key may upload: a file's key into the file's folder, a dataset's into
    the dataset."""
    live_submission(config, found)
    if found.dataset is None or dataset != dataset_id(found.dataset):
        raise Forbidden(f"the key does not grant dataset {dataset}")
    return Path(found.dataset)


def user(found: Grant) -> Grant:
    """A user key (the listener API); a submission's key is refused."""
    if found.user is None:
        raise Forbidden("a submission key does not grant the listener API")
    return found


def admin(found: Grant, doing: str) -> Grant:
    """An admin's user key, for `doing` (what the refusal names)."""
    if not user(found).admin:
        raise Forbidden(f"{doing} needs an admin key")
    return found
