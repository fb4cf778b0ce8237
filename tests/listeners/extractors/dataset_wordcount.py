#!/usr/bin/env python3
"""A dataset extractor written for Clowder with pyclowder, the way its samples are.

Its extractor_info declares `"process": {"dataset": [...]}`, so pyclowder builds a
dataset resource for each job: it reads the dataset's info and file list and downloads
its files (as a zip) with the job's key, then calls process_message with the files
on local disk.  This one counts the words of every text file, posts each file's counts
as that file's metadata and uploads a summary file into the dataset.  Nothing in it
knows storeflow.  WORDCOUNT_LOG, if set, gets one line per processed job id.
"""

import logging
import os
import tempfile

import pyclowder.files  # type: ignore[import-untyped]
from pyclowder.extractors import Extractor  # type: ignore[import-untyped]
from pyclowder.utils import CheckMessage  # type: ignore[import-untyped]


class DatasetWordCount(Extractor):
    def __init__(self) -> None:
        Extractor.__init__(self)
        self.setup()
        logging.getLogger("pyclowder").setLevel(logging.INFO)
        logging.getLogger("__main__").setLevel(logging.INFO)

    def check_message(self, connector, host, secret_key, resource, parameters):
        # Only datasets that hold a text file are worth downloading.
        if not any(f["filename"].endswith(".txt") for f in resource["files"]):
            return CheckMessage.ignore
        return CheckMessage.download

    def process_message(self, connector, host, secret_key, resource, parameters):
        ids = {f["filename"]: f["id"] for f in resource["files"]}
        totals = {"files": 0, "words": 0}
        for path in resource["local_paths"]:
            name = os.path.basename(path)
            if name not in ids or not name.endswith(".txt"):
                continue
            with open(path, encoding="utf-8", errors="replace") as stream:
                words = len(stream.read().split())
            totals["files"] += 1
            totals["words"] += words
            metadata = self.get_metadata({"words": words}, "file", ids[name], host)
            pyclowder.files.upload_metadata(connector, host, secret_key, ids[name], metadata)
        connector.message_process(resource, f"{totals['files']} files, {totals['words']} words")
        folder = tempfile.mkdtemp()
        summary = os.path.join(folder, f"{resource['name']}.summary.txt")
        with open(summary, "w") as out:
            out.write(f"{totals}\n")
        pyclowder.files.upload_to_dataset(connector, host, secret_key, resource["id"], summary)
        os.remove(summary)
        os.rmdir(folder)
        if log := os.environ.get("WORDCOUNT_LOG"):
            with open(log, "a") as out:
                out.write(f"{parameters.get('job_id')}\n")


if __name__ == "__main__":
    DatasetWordCount().start()
