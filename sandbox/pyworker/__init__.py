"""The runtime that runs inside the Python callback jail.

Stdlib only: the jailed interpreter runs with `-I -S`, so nothing from the
host's virtualenv (pydantic, prefect, ...) is importable here. The host mounts
this directory read-only at /rt/pyworker and starts `pyworker.main`.
"""
