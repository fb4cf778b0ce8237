"""The bucket transfer handler: files kept under ``bucket`` (a directory), by key."""

import os
import re
import shutil
import time

import opentaskpy.otflogging  # type: ignore[import-not-found]
from opentaskpy.remotehandlers.remotehandler import (  # type: ignore[import-not-found]
    RemoteExecutionHandler,
    RemoteTransferHandler,
)


class BucketTransfer(RemoteTransferHandler):
    """Source or destination in a bucket; staged through the worker."""

    TASK_TYPE = "T"

    def __init__(self, spec: dict):
        self.logger = opentaskpy.otflogging.init_logging(__name__, spec["task_id"], self.TASK_TYPE)
        super().__init__(spec)
        self.root = os.path.join(spec["bucket"], spec["directory"].strip("/"))
        # A token "refuse-writes" makes every upload fail with return code 1.
        self.read_only = spec["protocol"]["credentials"]["token"] == "refuse-writes"

    def supports_direct_transfer(self) -> bool:
        return False

    def list_files(self, directory: str | None = None, file_pattern: str | None = None) -> dict:
        directory = directory or self.root
        file_pattern = file_pattern or self.spec["fileRegex"]
        result = {}
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and re.match(file_pattern, name):
                stat = os.stat(path)
                result[name] = {"size": stat.st_size, "age": time.time() - stat.st_mtime}
        self.logger.info(f"bucket listed {len(result)} files in {directory}")
        return result

    def transfer_files(
        self, files: list[str], remote_spec: dict, dest_remote_handler: object = None
    ) -> int:
        raise NotImplementedError

    def pull_files_to_worker(self, files: list[str], local_staging_directory: str) -> int:
        for name in files:
            shutil.copyfile(
                os.path.join(self.root, name), os.path.join(local_staging_directory, name)
            )
            self.logger.info(f"bucket pulled {name}")
        return 0

    def push_files_from_worker(
        self, local_staging_directory: str, file_list: dict | None = None
    ) -> int:
        if self.read_only:
            self.logger.error("bucket refuses writes")
            return 1
        files = file_list or {f: {} for f in os.listdir(local_staging_directory)}
        os.makedirs(self.root, exist_ok=True)
        for name in files:
            local_path = os.path.join(local_staging_directory, name)
            shutil.copyfile(local_path, os.path.join(self.root, os.path.basename(name)))
            self.logger.info(f"bucket pushed {os.path.basename(name)}")
        return 0

    def pull_files(self, files: list[str]) -> int:
        raise NotImplementedError

    def move_files_to_final_location(self, files: dict) -> int:
        return 0

    def handle_post_copy_action(self, files: list[str]) -> int:
        pca = self.spec.get("postCopyAction")
        if not pca:
            return 0
        for name in files:
            if pca["action"] == "delete":
                os.remove(os.path.join(self.root, name))
                self.logger.info(f"bucket deleted {name}")
        return 0

    def tidy(self) -> None:
        self.logger.info("bucket tidy")


class BucketExecution(RemoteExecutionHandler):
    """Runs ``command`` against the bucket: ``touch NAME`` makes an object, ``fail``
    fails, ``hang`` waits until killed."""

    TASK_TYPE = "E"

    def __init__(self, spec: dict):
        self.logger = opentaskpy.otflogging.init_logging(__name__, spec["task_id"], self.TASK_TYPE)
        super().__init__(spec)
        self.killed = False

    def execute(self) -> bool:
        command = self.spec["command"]
        self.logger.info(f"bucket executing {command}")
        if command == "fail":
            return False
        if command == "hang":
            while not self.killed:
                time.sleep(0.05)
            return False
        verb, _, name = command.partition(" ")
        if verb == "touch" and name:
            with open(os.path.join(self.spec["bucket"], name), "w") as out:
                out.write("made\n")
            return True
        return False

    def kill(self) -> None:
        self.logger.info("bucket execution killed")
        self.killed = True

    def tidy(self) -> None:
        self.logger.info("bucket execution tidy")
