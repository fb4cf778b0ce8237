"""storeflow's small HTTP API: the Clowder v2 routes a stock extractor calls, and the
seed's listener API.

Extractors present the submission's temporary key as `X-API-KEY`; it grants exactly
the submission's file (download it, read and add its metadata) and its dataset (upload
a new file into it).  User keys grant the listener API (deleting needs an admin key).
Anything else is refused: 401 without a valid key, 403 with one that does not grant
it, and nothing is served or changed.  Files are streamed both ways: no whole file is
ever held in memory.
"""

import io
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import api_keys
from storeflow.models import catalog_repository as catalog
from storeflow.models import listener_repository as listeners
from storeflow.models import submission_repository as submissions
from storeflow.models.api_keys import Forbidden, Grant, Unauthorized
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput, NotFound
from storeflow.models.submissions import SubmissionStatus
from storeflow.tasks import submissions as steps
from storeflow.tasks.catalog import register
from storeflow.tasks.submissions import dataset_id

CHUNK = 1024 * 1024
# How long a download waits for pyclowder's `retry` reply to be recorded before it is
# taken for a redelivered job (the status consumer records replies within a second).
REDELIVERY_WAIT = 15.0


class _Chunks(io.RawIOBase):
    """A write-only sink that hands out what was written since last asked."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def metadata_document(d: catalog.MetadataView) -> dict[str, Any]:
    """A metadata document as Clowder v2's API returns it."""
    return {
        "id": str(d.id),
        "file_id": str(d.file_id),
        "content": d.content,
        "agent": {"type": d.agent_type, "name": d.agent},
        "created": d.created_at.isoformat(),
    }


def zip_stream(files: list[tuple[str, Path]]) -> Iterator[bytes]:
    """A zip of `files` (name in the archive, path), produced a chunk at a time: the
    archive is never whole in memory nor on disk (zipfile writes data descriptors to a
    stream it cannot seek)."""
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            with path.open("rb") as source, archive.open(name, "w", force_zip64=True) as entry:
                while chunk := source.read(CHUNK):
                    entry.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def create_app(config: StoreflowConfig) -> FastAPI:
    database_url = config.database_url
    app = FastAPI(title="storeflow", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(Unauthorized)
    def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=401)

    @app.exception_handler(Forbidden)
    def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(InvalidInput)
    def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def grant(x_api_key: Annotated[str | None, Header()] = None) -> Grant:
        with session_scope(database_url) as session:
            return api_keys.check(session, x_api_key)

    Granted = Annotated[Grant, Depends(grant)]

    def live_submission(found: Grant) -> str:
        """The submission a key belongs to, while it is still running."""
        if found.submission_id is None:
            raise Forbidden("a user key does not grant files")
        with session_scope(database_url) as session:
            status = submissions.get(session, found.submission_id, events=False).status
        if status is not SubmissionStatus.SUBMITTED:
            raise Unauthorized("the key's submission has ended")
        return found.submission_id

    def file_grant(found: Grant, file_id: str) -> catalog.FileView:
        """The file a key grants: a file submission's file, or a file of a dataset
        submission's dataset."""
        live_submission(found)
        refused = Forbidden(f"the key does not grant file {file_id}")
        if not file_id.isdigit():
            raise refused
        if found.file_id is not None:
            if int(file_id) != found.file_id:
                raise refused
        elif found.dataset is None:
            raise refused
        with session_scope(database_url) as session:
            try:
                file = catalog.get(session, int(file_id))
            except NotFound:
                raise refused from None
        if found.file_id is None and file.dataset != found.dataset:
            raise refused
        return file

    def dataset_grant(found: Grant, dataset: str) -> str:
        """The folder of the dataset a dataset submission's key grants (a file's key
        grants uploads into its folder, not reading the rest of it)."""
        live_submission(found)
        if found.file_id is not None or found.dataset is None:
            raise Forbidden(f"the key does not grant dataset {dataset}")
        if dataset != dataset_id(found.dataset):
            raise Forbidden(f"the key does not grant dataset {dataset}")
        return found.dataset

    def dataset_files(folder: str) -> list[catalog.FileView]:
        """The dataset's catalogued files that are still there."""
        with session_scope(database_url) as session:
            files = catalog.list_files(session, dataset=folder)
        return [f for f in files if Path(f.path).is_file()]

    @app.get("/api/v2/files/{file_id}/metadata")
    def file_metadata(file_id: str, found: Granted) -> list[dict[str, Any]]:
        file = file_grant(found, file_id)
        with session_scope(database_url) as session:
            documents = catalog.metadata_of(session, file.id)
        return [metadata_document(d) for d in documents]

    def hand_over(submission_id: str, what: str) -> None:
        """Record the hand-over of the submission's resource, or refuse a redelivered
        job (tasks/submissions.py: at most once).  pyclowder's `retry` reply precedes
        its retried job, but the status consumer may not have recorded it yet: wait
        for it a while before calling the download a redelivery."""
        deadline = time.monotonic() + REDELIVERY_WAIT
        while True:
            with session_scope(database_url) as session:
                if steps.claim_download(session, submission_id, what):
                    return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        with session_scope(database_url) as session:
            steps.mark_redelivered(session, submission_id, what)
        raise HTTPException(409, steps.LOST_MESSAGE.format(what=what))

    @app.get("/api/v2/files/{file_id}")
    def file_bytes(file_id: str, found: Granted) -> FileResponse:
        file = file_grant(found, file_id)
        if not Path(file.path).is_file():
            raise HTTPException(404, f"file #{file.id} is no longer at {file.path}")
        if found.file_id is not None:  # the submission's own file (not a dataset's member)
            hand_over(live_submission(found), "file")
        # FileResponse streams the file in chunks.
        return FileResponse(file.path, media_type=file.mime_type, filename=file.name)

    @app.post("/api/v2/files/{file_id}/metadata")
    async def add_file_metadata(file_id: str, request: Request, found: Granted) -> dict[str, Any]:
        file = file_grant(found, file_id)
        try:
            body = await request.json()
        except ValueError:
            raise InvalidInput("metadata", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise InvalidInput("metadata", "must be a JSON object")
        # pyclowder's v2 documents are {"content", "contents", "listener"}: keep the content.
        content = body.get("content", body)
        if not isinstance(content, dict):
            raise InvalidInput("metadata.content", "must be a JSON object")
        with session_scope(database_url) as session:
            submission = submissions.get(session, str(found.submission_id), events=False)
            document = catalog.add_metadata(
                session, file.id, content, agent_type="listener", agent=submission.listener
            )
        return {"id": str(document.id), "file_id": str(file.id), "content": document.content}

    # -- datasets (pyclowder's dataset jobs: info, file list, the files as a zip) ---

    @app.get("/api/v2/datasets/{dataset}")
    def dataset_info(dataset: str, found: Granted) -> dict[str, Any]:
        folder = dataset_grant(found, dataset)
        files = dataset_files(folder)
        return {
            "id": dataset,
            "name": Path(folder).name,
            "description": "",
            "files": len(files),
            "bytes": sum(f.size for f in files),
        }

    @app.get("/api/v2/datasets/{dataset}/files")
    def dataset_file_list(dataset: str, found: Granted) -> dict[str, Any]:
        folder = dataset_grant(found, dataset)
        # Clowder v2's FileOut fields, plus v1's `filename` and `file_ext`, which
        # pyclowder's dataset code reads; never `filepath` (the path stays private, and
        # the extractor downloads through its key).
        return {
            "data": [
                {
                    "id": str(f.id),
                    "name": f.name,
                    "filename": f.name,
                    "file_ext": os.path.splitext(f.name)[1],
                    "dataset_id": dataset,
                    "bytes": f.size,
                    "content_type": {
                        "content_type": f.mime_type,
                        "main_type": f.mime_type.split("/")[0],
                    },
                    "created": f.created_at.isoformat(),
                }
                for f in dataset_files(folder)
            ]
        }

    @app.get("/api/v2/datasets/{dataset}/download")
    def dataset_zip(dataset: str, found: Granted) -> StreamingResponse:
        folder = dataset_grant(found, dataset)
        files = dataset_files(folder)
        hand_over(live_submission(found), "dataset")
        return StreamingResponse(
            zip_stream([(f.name, Path(f.path)) for f in files]),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{dataset}.zip"'},
        )

    @app.get("/api/v2/datasets/{dataset}/metadata")
    def dataset_metadata(dataset: str, found: Granted) -> list[dict[str, Any]]:
        """The metadata documents of the dataset's files (the catalog keeps metadata
        on files; a dataset's is theirs)."""
        folder = dataset_grant(found, dataset)
        with session_scope(database_url) as session:
            return [
                metadata_document(d)
                for f in catalog.list_files(session, dataset=folder)
                for d in catalog.metadata_of(session, f.id)
            ]

    @app.post("/api/v2/datasets/{dataset}/files")
    def upload(dataset: str, file: UploadFile, found: Granted) -> dict[str, str]:
        live_submission(found)
        # A file's key uploads into the file's folder; a dataset's into the dataset.
        if found.dataset is None or dataset != dataset_id(found.dataset):
            raise Forbidden(f"the key does not grant dataset {dataset}")
        name = os.path.basename(file.filename or "")
        if name in ("", ".", "..") or "/" in (file.filename or "") or "\0" in name:
            raise InvalidInput("file", f"{file.filename!r} is not a plain file name")
        folder = Path(found.dataset)
        target = folder / name
        if target.exists():
            raise HTTPException(409, f"{name} already exists in the dataset")
        # Copied in chunks to a hidden file beside the target, then renamed: a reader
        # (or the watcher) never sees half a file under its final name.
        handle, partial = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                shutil.copyfileobj(file.file, out, CHUNK)
            os.link(partial, target)  # fails if the name was taken meanwhile
        except FileExistsError:
            raise HTTPException(409, f"{name} already exists in the dataset") from None
        finally:
            os.unlink(partial)
        registered, _ = register(config, target)
        return {"id": str(registered.id)}

    # -- the seed's listener API (user keys) ----------------------------------------

    def user(found: Grant) -> Grant:
        if found.user is None:
            raise Forbidden("a submission key does not grant the listener API")
        return found

    @app.get("/api/listeners")
    def list_listeners(
        found: Granted,
        id: int | None = None,
        name: str | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        user(found)
        with session_scope(database_url) as session:
            views = listeners.list_listeners(
                session,
                listener_id=id,
                name=name,
                skip=max(0, skip),
                limit=max(0, min(limit, 1000)),
                include_inactive=found.admin,
            )
        return [v.model_dump(mode="json") for v in views]

    @app.delete("/api/listeners/{listener_id}")
    def delete_listener(listener_id: int, found: Granted) -> dict[str, Any]:
        if not user(found).admin:
            raise Forbidden("deleting a listener needs an admin key")
        with session_scope(database_url) as session:
            try:
                return listeners.deactivate(session, str(listener_id)).model_dump(mode="json")
            except NotFound as exc:
                raise HTTPException(404, str(exc)) from None

    # -- feeds (the seed's feed API; docs/listeners.md "Feeds") -----------------------

    def feed_steps() -> Any:
        from storeflow.tasks import feeds as steps  # imports Prefect's clients

        return steps

    @app.post("/api/feeds")
    def create_feed(body: dict[str, Any], found: Granted) -> dict[str, Any]:
        from storeflow.models import feed_repository as feeds
        from storeflow.models.feed_criteria import parse_query

        user(found)
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidInput("name", "required (a string)")
        criteria = body.get("criteria", {})
        if "query" in body:
            if not isinstance(body["query"], str):
                raise InvalidInput("query", "must be a string")
            criteria = {**(criteria or {}), **parse_query(body["query"])}
        with session_scope(database_url) as session:
            return feeds.create(
                session,
                name,
                criteria,
                kind=str(body.get("kind", "file")),
                parameters=body.get("parameters") or {},
                approval=bool(body.get("approval", False)),
            ).model_dump(mode="json")

    @app.get("/api/feeds")
    def list_feeds(
        found: Granted,
        name: str | None = None,
        listener: int | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        from storeflow.models import feed_repository as feeds

        user(found)
        with session_scope(database_url) as session:
            views = feeds.list_feeds(
                session,
                name=name,
                listener_id=listener,
                skip=max(0, skip),
                limit=max(0, min(limit, 1000)),
            )
        return [v.model_dump(mode="json") for v in views]

    @app.delete("/api/feeds/{feed_id}")
    def delete_feed(feed_id: int, found: Granted) -> dict[str, Any]:
        user(found)
        try:
            deleted: Any = feed_steps().delete_feed(config, str(feed_id))
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return {"deleted": deleted.model_dump(mode="json")}

    @app.post("/api/feeds/{feed_id}/subscribe/{listener_id}")
    def subscribe(
        feed_id: int, listener_id: int, found: Granted, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        user(found)
        body = body or {}
        steps = feed_steps()
        try:
            done = steps.subscribe(
                config, str(feed_id), str(listener_id), auto=bool(body.get("auto", True))
            )
            sent = (
                steps.backfill(config, str(feed_id), str(listener_id))
                if body.get("backfill", False)
                else 0
            )
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return {**done.subscription.model_dump(mode="json"), "created": done.created, "sent": sent}

    @app.post("/api/feeds/{feed_id}/execute/{listener_id}")
    def execute(
        feed_id: int,
        listener_id: int,
        found: Granted,
        force_all: bool = False,
        skip: int = 0,
        limit: int | None = None,
    ) -> dict[str, int]:
        user(found)
        try:
            sent = feed_steps().execute(
                config, str(feed_id), str(listener_id), force_all=force_all, skip=skip, limit=limit
            )
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return {"sent": sent}

    @app.get("/api/feeds/{feed_id}/counts/{listener_id}")
    def counts(feed_id: int, listener_id: int, found: Granted) -> dict[str, int]:
        user(found)
        try:
            tally: Any = feed_steps().counts(config, str(feed_id), str(listener_id))
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return dict(tally.model_dump())

    @app.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    )
    def refuse(path: str, found: Granted) -> None:
        raise Forbidden(f"/{path} is not served to this key")

    return app
