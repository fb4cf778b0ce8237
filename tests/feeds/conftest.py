"""Feed tests use the listener tests' broker wiring (a reply queue of their own and the
settings a submit run publishes its job with)."""

from tests.listeners.conftest import wire  # noqa: F401
