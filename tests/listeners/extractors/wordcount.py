#!/usr/bin/env python3
"""A word-count extractor written for Clowder with pyclowder, the way its samples are.

Nothing in it knows storeflow: it heartbeats, takes jobs from its queue, downloads
the file with the job's key, posts the counts as metadata.  The tests run it as a
subprocess with CLOWDER_VERSION=2.  WORDCOUNT_MODE picks a behaviour the checks
need: `count` (the default), `raise` (every attempt fails), `upload` (also uploads a
summary file into the dataset).  WORDCOUNT_LOG, if set, gets one line per processed
job id (to count what ran, and how often).  WORDCOUNT_SLEEP (seconds) makes each job
take that long, as real work does (a kill or a broker restart then lands mid-job).
"""

import logging
import os
import tempfile
import time

import pyclowder.files  # type: ignore[import-untyped]
from pyclowder.extractors import Extractor  # type: ignore[import-untyped]


class WordCount(Extractor):
    def __init__(self) -> None:
        Extractor.__init__(self)
        self.setup()
        logging.getLogger("pyclowder").setLevel(logging.INFO)
        logging.getLogger("__main__").setLevel(logging.INFO)

    def process_message(self, connector, host, secret_key, resource, parameters):
        mode = os.environ.get("WORDCOUNT_MODE", "count")
        if mode == "raise":
            raise RuntimeError("this extractor always fails")
        time.sleep(float(os.environ.get("WORDCOUNT_SLEEP", "0")))
        with open(resource["local_paths"][0], encoding="utf-8", errors="replace") as stream:
            text = stream.read()
        counts = {"lines": text.count("\n"), "words": len(text.split()), "characters": len(text)}
        connector.message_process(resource, f"counted {counts['words']} words")
        metadata = self.get_metadata(counts, "file", resource["id"], host)
        pyclowder.files.upload_metadata(connector, host, secret_key, resource["id"], metadata)
        if mode == "upload":
            folder = tempfile.mkdtemp()
            summary = os.path.join(folder, f"{resource['name']}.counts.txt")
            with open(summary, "w") as out:
                out.write(f"{counts}\n")
            dataset = resource["parent"]["id"]
            pyclowder.files.upload_to_dataset(connector, host, secret_key, dataset, summary)
            os.remove(summary)
            os.rmdir(folder)
        if log := os.environ.get("WORDCOUNT_LOG"):
            with open(log, "a") as out:
                out.write(f"{parameters.get('job_id')}\n")


if __name__ == "__main__":
    WordCount().start()
