"""The transfer flow's copy settings default to the engine's, named in one place."""

import inspect

from storeflow.flows.transfers import transfer
from storeflow.tasks.transfer import engine


def test_the_flows_copy_defaults_are_the_engines_and_are_described() -> None:
    properties = transfer.parameters.model_dump()["properties"]
    assert properties["batch_size"]["default"] == engine.DEFAULT_BATCH_SIZE
    # Empty: the engine picks (its default_workers), as deliver does with None.
    assert properties["max_workers"]["default"] is None
    assert inspect.signature(engine.deliver).parameters["max_workers"].default is None
    assert (
        inspect.signature(engine.deliver).parameters["batch_size"].default
        == engine.DEFAULT_BATCH_SIZE
    )
    assert (
        inspect.signature(engine.run_transfer).parameters["batch_size"].default
        == engine.DEFAULT_BATCH_SIZE
    )
    for name in ("max_workers", "batch_size"):
        assert "engine" in properties[name]["description"], name
