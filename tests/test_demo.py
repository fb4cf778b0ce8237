"""`storeflow demo` runs every step as expected on a fresh home."""

from pathlib import Path

from storeflow.cli.demo import run_demo


def test_demo_steps_all_end_as_expected(storeflow_home: Path) -> None:
    steps = run_demo(storeflow_home)
    assert [s.state for s in steps] == [
        "Active",
        "Active",
        "Active",
        "Active",
        "Refused",
        "Errored",
        "Deleted",
        "Deleted",
        "Deleted",
        "Completed",
    ]
    assert all(s.expected for s in steps)
    audit = (storeflow_home / "demo" / "audit.jsonl").read_text().splitlines()
    assert len(audit) == 2 * 9  # a pre and a post record for each lifecycle run
    assert not any((storeflow_home / "demo" / "storage" / "spaces").iterdir())
