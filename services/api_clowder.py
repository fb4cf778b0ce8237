"""The Clowder v2 routes a stock extractor (pyclowder) calls with its submission's key:
its file and the file's metadata, its dataset's information, file list, files as a
zip and metadata, and uploads of new files.  Files are streamed both ways: no whole
file is ever held in memory."""

import io
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import catalog_repository as catalog
from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput
from storeflow.services.api_access import (
    Config,
    Granted,
    dataset_grant,
    file_grant,
    live_submission,
    upload_folder,
)
from storeflow.tasks import submissions as steps
from storeflow.tasks.catalog import register

CHUNK = 1024 * 1024
# How long a download waits for pyclowder's `retry` reply to be recorded before it is
# taken for a redelivered job (the status consumer records replies within a second).
REDELIVERY_WAIT = 15.0

router = APIRouter(prefix="/api/v2")


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


def dataset_files(config: StoreflowConfig, folder: str) -> list[catalog.FileView]:
    """The dataset's catalogued files that are still there."""
    with session_scope(config.database_url) as session:
        files = catalog.list_files(session, dataset=folder)
    return [f for f in files if Path(f.path).is_file()]


def hand_over(config: StoreflowConfig, submission_id: str, what: str) -> None:
    """Record the hand-over of the submission's resource, or refuse a redelivered job
    (tasks/submissions.py: at most once).  pyclowder's `retry` reply precedes its
    retried job, but the status consumer may not have recorded it yet: wait for it a
    while before calling the download a redelivery."""
    deadline = time.monotonic() + REDELIVERY_WAIT
    while True:
        with session_scope(config.database_url) as session:
            if steps.claim_download(session, submission_id, what):
                return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    with session_scope(config.database_url) as session:
        steps.mark_redelivered(session, submission_id, what)
    raise HTTPException(409, steps.LOST_MESSAGE.format(what=what))


# -- files --------------------------------------------------------------------------


@router.get("/files/{file_id}/metadata")
def file_metadata(file_id: str, found: Granted, config: Config) -> list[dict[str, Any]]:
    file = file_grant(config, found, file_id)
    with session_scope(config.database_url) as session:
        documents = catalog.metadata_of(session, file.id)
    return [metadata_document(d) for d in documents]


@router.get("/files/{file_id}")
def file_bytes(file_id: str, found: Granted, config: Config) -> FileResponse:
    file = file_grant(config, found, file_id)
    if not Path(file.path).is_file():
        raise HTTPException(404, f"file #{file.id} is no longer at {file.path}")
    if found.file_id is not None:  # the submission's own file (not a dataset's member)
        hand_over(config, live_submission(config, found), "file")
    # FileResponse streams the file in chunks.
    return FileResponse(file.path, media_type=file.mime_type, filename=file.name)


@router.post("/files/{file_id}/metadata")
async def add_file_metadata(
    file_id: str, request: Request, found: Granted, config: Config
) -> dict[str, Any]:
    file = file_grant(config, found, file_id)
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
    with session_scope(config.database_url) as session:
        submission = submissions.get(session, str(found.submission_id), events=False)
        document = catalog.add_metadata(
            session, file.id, content, agent_type="listener", agent=submission.listener
        )
    return {"id": str(document.id), "file_id": str(file.id), "content": document.content}


# -- datasets (pyclowder's dataset jobs: info, file list, the files as a zip) ---------


@router.get("/datasets/{dataset}")
def dataset_info(dataset: str, found: Granted, config: Config) -> dict[str, Any]:
    folder = dataset_grant(config, found, dataset)
    files = dataset_files(config, folder)
    return {
        "id": dataset,
        "name": Path(folder).name,
        "description": "",
        "files": len(files),
        "bytes": sum(f.size for f in files),
    }


@router.get("/datasets/{dataset}/files")
def dataset_file_list(dataset: str, found: Granted, config: Config) -> dict[str, Any]:
    folder = dataset_grant(config, found, dataset)
    # Clowder v2's FileOut fields, plus v1's `filename` and `file_ext`, which pyclowder's
    # dataset code reads; never `filepath` (the path stays private, and the extractor
    # downloads through its key).
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
            for f in dataset_files(config, folder)
        ]
    }


@router.get("/datasets/{dataset}/download")
def dataset_zip(dataset: str, found: Granted, config: Config) -> StreamingResponse:
    folder = dataset_grant(config, found, dataset)
    files = dataset_files(config, folder)
    hand_over(config, live_submission(config, found), "dataset")
    return StreamingResponse(
        zip_stream([(f.name, Path(f.path)) for f in files]),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{dataset}.zip"'},
    )


@router.get("/datasets/{dataset}/metadata")
def dataset_metadata(dataset: str, found: Granted, config: Config) -> list[dict[str, Any]]:
    """The metadata documents of the dataset's files (the catalog keeps metadata on
    files; a dataset's is theirs)."""
    folder = dataset_grant(config, found, dataset)
    with session_scope(config.database_url) as session:
        return [
            metadata_document(d)
            for f in catalog.list_files(session, dataset=folder)
            for d in catalog.metadata_of(session, f.id)
        ]


@router.post("/datasets/{dataset}/files")
def upload(dataset: str, file: UploadFile, found: Granted, config: Config) -> dict[str, str]:
    folder = upload_folder(config, found, dataset)
    name = os.path.basename(file.filename or "")
    if name in ("", ".", "..") or "/" in (file.filename or "") or "\0" in name:
        raise InvalidInput("file", f"{file.filename!r} is not a plain file name")
    target = folder / name
    if target.exists():
        raise HTTPException(409, f"{name} already exists in the dataset")
    # Copied in chunks to a hidden file beside the target, then renamed: a reader (or
    # the watcher) never sees half a file under its final name.
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
