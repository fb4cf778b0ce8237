"""The warm runner: a long-lived storeflow process that has Prefect and every flow
imported, and forks a child for each `storeflow` command handed to it.

A CLI that runs a Prefect flow otherwise pays `import prefect` (seconds) before its
first byte moves. `storeflow warm start` keeps one process warm per storeflow home;
the `storeflow` command hands its arguments, working directory, environment and
terminal (stdin/stdout/stderr, passed as file descriptors) to it over a Unix socket,
the forked child runs the command exactly as the CLI would, and its exit status comes
back. With no usable warm runner the command runs in its own process as before.

wire.py and client.py use the standard library only: they run before anything else
is imported.
"""
