"""The resource-kind registry: prefect.yaml, the flows and the registry agree."""

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from storeflow.models.errors import InvalidInput
from storeflow.tasks import kinds

ROOT = Path(__file__).resolve().parents[1]


def deployments() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in document["deployments"]}


def test_every_kind_action_is_deployed_with_the_registry_entrypoint() -> None:
    declared = deployments()
    for kind in kinds.all_kinds():
        for action in kind.actions:
            name = kind.deployment(action)
            assert name in declared, f"prefect.yaml has no deployment {name}"
            assert declared[name]["entrypoint"] == kind.entrypoint(action), name


def test_every_deployment_of_a_kind_module_is_a_registered_action() -> None:
    modules = {kind.entrypoint(kind.actions[0]).partition(":")[0] for kind in kinds.all_kinds()}
    registered = {kind.deployment(a) for kind in kinds.all_kinds() for a in kind.actions}
    for name, deployment in deployments().items():
        if deployment["entrypoint"].partition(":")[0] in modules:
            assert name in registered, f"{name} is deployed but no kind registers it"


def test_each_action_flow_exists_and_is_named_as_its_deployment() -> None:
    for kind in kinds.all_kinds():
        for action in kind.actions:
            assert kind.flow(action).name == kind.deployment(action)


def test_reading_the_registry_imports_no_prefect() -> None:
    code = (
        "import sys\n"
        "from storeflow.tasks import kinds\n"
        "assert [k.name for k in kinds.all_kinds()]\n"
        "print('prefect' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_unknown_and_duplicate_kinds_are_refused_with_the_field() -> None:
    with pytest.raises(InvalidInput, match="kind: 'volume' is not one of space") as info:
        kinds.get("volume")
    assert info.value.field == "kind"
    with pytest.raises(InvalidInput, match="'space' is already registered"):
        kinds.register(dataclasses.replace(kinds.get("space"), help="another space"))
    with pytest.raises(InvalidInput, match="action: space has no 'tier'"):
        kinds.get("space").flow_path("tier")


def test_reconcilers_are_listed_once_each_in_registry_order() -> None:
    assert kinds.reconcilers() == [
        "storeflow.tasks.reconcile:reconcile_directories",
        "storeflow.tasks.exposers.reconcile:reconcile_exposers",
        "storeflow.tasks.providers:reconcile_providers",
        "storeflow.tasks.replicas:reconcile_replicas",
        "storeflow.tasks.profiles:reconcile_profiles",
    ]


def test_every_parameter_of_every_kind_flow_is_described_for_the_ui() -> None:
    for kind in kinds.all_kinds():
        for action in kind.actions:
            properties = kind.flow(action).parameters.model_dump()["properties"]
            bare = [name for name, field in properties.items() if not field.get("description")]
            assert bare == [], f"{kind.deployment(action)}: no description for {bare}"
