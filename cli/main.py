"""The `storeflow` command: hand the command to a warm runner when one fits, else run it
here. Only the standard library is imported until we know which."""

import sys

from storeflow.cli.warm.client import hand_over


def main() -> None:
    code = hand_over(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from storeflow.cli.app import main as run_in_this_process

    run_in_this_process()


if __name__ == "__main__":
    main()
