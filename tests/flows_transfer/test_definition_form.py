"""The `transfer` deployment's `definition` parameter as the Prefect UI and API get it:
source and destinations are a union discriminated by `protocol.name`, one typed branch
per registered protocol (the UI's run form offers them; its JSON tab stays), and the
API checks a run's definition against it before the run exists.

(A protocol installed from another package gets its branch the same way:
tests/transfer/test_protocol_plugin.py::test_plugin_protocol_is_in_the_json_schemas.)"""

from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError

from storeflow.flows.transfers import transfer
from storeflow.models.protocols import registry


@pytest.fixture(scope="module")
def deployment_schema() -> tuple[UUID, dict[str, Any]]:
    """The transfer deployment as `prefect deploy` makes it (the flow's parameter schema,
    enforced), read back from the server."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(transfer)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name="definition-form",
            entrypoint="flows/transfers.py:transfer",
            parameter_openapi_schema=transfer.parameters.model_dump_for_openapi(),
            enforce_parameter_schema=True,
        )
        schema = client.read_deployment(deployment_id).parameter_openapi_schema
    assert isinstance(schema, dict)
    return deployment_id, schema


def resolve(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    return dict(schema["definitions"][ref.rsplit("/", 1)[1]])


def names_accepted(schema: dict[str, Any], branch: dict[str, Any]) -> set[str]:
    """The `protocol.name` values a branch (a source or destination model) takes."""
    protocol = resolve(schema, branch["properties"]["protocol"]["$ref"])
    name = protocol["properties"]["name"]
    return set(name["enum"]) if "enum" in name else {name["const"]}


def test_source_and_destination_are_discriminated_by_protocol_name(
    deployment_schema: tuple[UUID, dict[str, Any]],
) -> None:
    _, schema = deployment_schema
    definition = schema["properties"]["definition"]["anyOf"][0]["$ref"]
    fields = resolve(schema, definition)["properties"]
    registered = set(registry().names())
    for union in (fields["source"], fields["destination"]["items"]):
        discriminator = union["discriminator"]
        assert discriminator["propertyName"] == "protocol.name"
        assert set(discriminator["mapping"]) == registered
        # Each name leads to the branch that takes exactly that protocol's names...
        for name, ref in discriminator["mapping"].items():
            assert {"$ref": ref} in union["oneOf"]
            assert name in names_accepted(schema, resolve(schema, ref))
        # ...and the branches are the protocols, one each, no two taking one name.
        taken = [names_accepted(schema, resolve(schema, b["$ref"])) for b in union["oneOf"]]
        assert len(taken) == len(registry().protocols)
        assert sum(map(len, taken)) == len(set().union(*taken)) == len(registered)


def local(directory: Path, name: str = "local") -> dict[str, Any]:
    return {"directory": str(directory), "protocol": {"name": name}}


def test_the_api_takes_a_typed_definition_and_refuses_an_unknown_protocol(
    deployment_schema: tuple[UUID, dict[str, Any]], tmp_path: Path
) -> None:
    deployment_id, _ = deployment_schema
    good = {
        "type": "transfer",
        "source": {**local(tmp_path / "in"), "fileRegex": ".*"},
        "destination": [local(tmp_path / "out", "opentaskpy.remotehandlers.local.LocalTransfer")],
    }
    bad = {**good, "destination": [local(tmp_path / "out", "ftp")]}
    with get_client(sync_client=True) as client:
        created = client.create_flow_run_from_deployment(
            deployment_id, parameters={"definition": good}
        )
        assert created.parameters["definition"] == good  # scheduled; no worker runs it
        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(deployment_id, parameters={"definition": bad})
    response = refused.value.response
    assert isinstance(response, httpx.Response)
    assert response.status_code == 409 and "ftp" in response.text
