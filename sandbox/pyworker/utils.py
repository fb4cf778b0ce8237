"""`import utils` inside a Python callback resolves to this module."""

from .api import NodeInfo, Progress, Request, Timestamp

__all__ = ["NodeInfo", "Progress", "Timestamp", "get_node_info"]


def get_node_info(req: Request) -> NodeInfo | None:
    """The file the request is about (None in task-level stages).

    The same object is returned on every call, so metadata a callback sets on
    it is what the runtime sends back to the host.
    """
    return req.node_info
