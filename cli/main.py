"""The `storeflow` command: hand the command to a warm runner when one fits, else run it
here. Only the standard library is imported until we know which."""

import os
import sys

from storeflow.cli.warm.client import hand_over


def main() -> None:
    code = hand_over(sys.argv[1:])
    if code is not None:
        leave(code)
    from storeflow.cli.app import main as run_in_this_process

    run_in_this_process()


def leave(code: int) -> None:
    """The warm runner ran the command: this process only imported part of the standard
    library, started no thread and registered nothing to run at exit, so it ends without
    the interpreter's teardown (3 ms of every command), once what it printed is out."""
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 (contextlib is not imported here)
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
