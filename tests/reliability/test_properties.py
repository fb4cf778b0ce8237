"""Property-based: hostile values in every verb's options and every deployment's
parameters.  The only outcomes are success, a refusal in one line (exit 2; the API's
409/422), or a run that ends Refused/Errored (exit 1); never a traceback, never a
value that breaks Prefect's run listing for everyone."""

from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from typer.testing import CliRunner

from storeflow.cli.app import app
from storeflow.tasks import kinds

runner = CliRunner()

# What an attacker or an unlucky operator types: numbers past every bound, digits that
# are not ASCII, control characters, path tricks, very long text, and plain good values.
HOSTILE_TEXT = st.one_of(
    st.sampled_from(
        [
            "99999999999999999999999P",
            "9223372036854775808",
            "-1",
            "0",
            "1e309",
            "\u0663\u0663",
            "1\u00b2",
            "a\nb",
            "a\x00b",
            "a\rb",
            "../../etc",
            "/",
            "",
            " ",
            "x" * 300,
            "[x]",
            "ok",
            "10G",
            "60",
            "3600",
            "@staff:ro",
            "127.0.0.1:rw",
        ]
    ),
    st.text(max_size=12),
)
HOSTILE_JSON: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([2**63, 2**31, -(2**63) - 1, 1e308]),
        HOSTILE_TEXT,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(HOSTILE_TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)


def post(path: str, body: dict[str, Any]) -> httpx.Response:
    """A raw API request to the suite's Prefect server (no retries, no raising)."""
    with get_client(sync_client=True) as client:
        try:
            return client._client.post(path, json=body)
        except PrefectHTTPStatusError as refused:  # Prefect's client raises for 4xx/5xx
            return refused.response


def listing_answers() -> None:
    """Prefect's run listing (the UI's runs page) still answers."""
    for path, body in (("/flow_runs/filter", {"limit": 200}), ("/flow_runs/paginate", {})):
        answer = post(path, body)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])


def one_line_or_usage(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return len(lines) == 1 or "Usage:" in stderr


VERBS: list[tuple[str, ...]] = [
    ("space", "create", "{0}", "--quota", "{1}"),
    ("space", "update", "base", "--quota", "{0}", "--etag", "{2}"),
    ("space", "update", "base", "--rename", "{0}"),
    ("space", "delete", "{0}", "--etag", "{2}"),
    ("snapshot", "create", "base", "{0}", "--mode", "{1}"),
    ("template", "create", "{0}", "--source", "{1}"),
    ("exposer", "deny", "cifs", "{0}", "{1}"),
    ("exposer", "create", "nfs", "{0}", "--space", "base", "--allow", "{1}"),
    ("replica", "create", "{0}", "--space", "base", "--provider", "{1}", "--direction", "up"),
    ("replica", "create", "r", "--space", "base", "--provider", "p", "--interval", "{0}"),
    ("provider", "create", "{0}", "--directory", "{1}"),
    ("profile", "create", "{0}", "--pool", "{1}", "--pool", "b=/tmp", "--interval", "{2}"),
    ("transfer", "run", "/nonexistent/{0}.json", "--name", "{1}"),
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    verb=st.sampled_from(VERBS),
    values=st.tuples(HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT),
)
def test_every_verb_answers_hostile_values_in_one_line(
    storeflow_home: Path, verb: tuple[str, ...], values: tuple[str, str, str]
) -> None:
    if runner.invoke(app, ["space", "show", "base"]).exit_code != 0:
        assert runner.invoke(app, ["space", "create", "base"]).exit_code == 0
    args = [part.format(*values) for part in verb]
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        repr(result.exception),
    )
    if result.exit_code == 2:
        assert one_line_or_usage(result.stderr), (args, result.stderr)
    assert "Traceback" not in result.stderr, (args, result.stderr)
    listing_answers()


@pytest.fixture(scope="module")
def deployments() -> dict[str, str]:
    """Every registered kind action deployed (schema enforced, as `prefect deploy` does)."""
    ids: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for kind in kinds.all_kinds():
            for action in kind.actions:
                flow = kind.flow(action)
                flow_id = client.create_flow(flow)
                ids[kind.deployment(action)] = str(
                    client.create_deployment(
                        flow_id=flow_id,
                        name=f"props-{kind.deployment(action)}",
                        entrypoint=kind.entrypoint(action),
                        parameter_openapi_schema=flow.parameters.model_dump(),
                        enforce_parameter_schema=True,
                    )
                )
    return ids


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_api_refuses_out_of_bounds_parameters_before_a_run_exists(
    deployments: dict[str, str], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(deployments)))
    kind_name, _, action = name.rpartition("-")
    flow = kinds.get(kind_name).flow(action)
    names = list(flow.parameters.model_dump()["properties"])
    parameters = data.draw(st.dictionaries(st.sampled_from(names), HOSTILE_JSON, max_size=3))
    answer = post(f"/deployments/{deployments[name]}/create_flow_run", {"parameters": parameters})
    # 201: valid (scheduled, never run: no worker); 409: the schema refused it (Prefect's
    # answer for enforced parameter schemas); 422: the request itself was refused.
    assert answer.status_code in (201, 409, 422), (name, parameters, answer.text[:300])
    listing_answers()
