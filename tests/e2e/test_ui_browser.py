"""The Prefect UI as a storage admin meets it, in a real headless chromium, against the
stack `storeflow server start` brings up: deployments listed, the space-update form's
Quota field, a run ending Active with the inventory artifact, storeflow's Block types.
Screenshots stay in the test's tmp directory."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cdp import browser
from tests.e2e.conftest import server_started, storeflow
from tests.e2e.server import api, wait_for_final_state


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`storeflow server start` in a private home (SQLite for both databases)."""
    with server_started(tmp_path_factory.mktemp("ui-stack"), ["--workers", "1"]) as env:
        yield env


def deployment(api_url: str, name: str) -> dict[str, object]:
    return dict(api(f"{api_url}/deployments/name/{name}/{name}"))


# The stack's start (`prefect deploy --all` of every deployment) takes minutes on a
# loaded 2-core machine: more than the suite's 600 s per test.
@pytest.mark.timeout(1800)
def test_admin_console_in_a_browser(stack: dict[str, str], tmp_path: Path) -> None:
    api_url = stack["PREFECT_API_URL"]
    ui = api_url.removesuffix("/api")
    created = storeflow(stack, "space", "create", "ui-alpha", "--quota", "1G", "--json")
    assert created.returncode == 0, created.stdout + created.stderr

    with browser(tmp_path) as page:
        deployed = api(f"{api_url}/deployments/filter", "POST", {"limit": 200})
        names = {d["name"] for d in deployed}
        assert {"space-create", "space-update", "snapshot-create", "reconcile"} <= names
        page.goto(f"{ui}/deployments")
        # The page lists them A to Z, a page at a time: the count and the first ones.
        first = sorted(names)[:2]
        page.wait_for_text(f"{len(names)} Deployments", *first, "lifecycle")
        page.screenshot(tmp_path / "deployments.png")

        update = deployment(api_url, "space-update")
        page.goto(f"{ui}/deployments/deployment/{update['id']}/run")
        form = page.wait_for_text("changes", "Quota", "etag", "config")
        page.screenshot(tmp_path / "space-update-form.png")
        assert "Quota" in form and "etag" in form  # the fields, by their titles
        schema = update["parameter_openapi_schema"]
        assert isinstance(schema, dict)
        quota = schema["definitions"]["SpaceUpdate"]["properties"]["quota"]
        assert quota["description"] == "New quota; 0 removes the limit."
        # The run the form submits: created through the same API call the form makes.
        run = api(
            f"{api_url}/deployments/{update['id']}/create_flow_run",
            "POST",
            {"parameters": {"name": "ui-alpha", "changes": {"quota": "2G"}}},
        )
        final = wait_for_final_state(api_url, run["id"], 300)
        assert final["state"]["name"] == "Active", final["state"]
        assert {"storeflow", "space"} <= set(final["tags"])

        page.goto(f"{ui}/runs/flow-run/{run['id']}")
        page.wait_for_text("Active", final["name"])
        page.screenshot(tmp_path / "run.png")
        artifacts = api(
            f"{api_url}/artifacts/filter",
            "POST",
            {"artifacts": {"key": {"any_": ["storeflow-spaces"]}}, "limit": 1},
        )
        assert artifacts, "no storeflow-spaces inventory artifact"
        page.goto(f"{ui}/runs/flow-run/{run['id']}?tab=Artifacts")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "2 GiB" not in page.text():
            time.sleep(1)
        page.screenshot(tmp_path / "run-artifacts.png")
        table = json.dumps(artifacts[0]["data"])
        assert "ui-alpha" in table

        page.goto(f"{ui}/blocks/catalog")
        page.wait_for_text("Storeflow Config", "Storeflow Storage")
        page.screenshot(tmp_path / "blocks.png")
    assert (tmp_path / "blocks.png").stat().st_size > 1000
