"""The indexed matcher gives exactly what evaluating every feed plainly gives."""

import fnmatch
import random
from typing import Any

import pytest

from storeflow.models.feed_criteria import Criteria, MatchFile, matches, parse_criteria
from storeflow.tasks.matcher import Matcher, literal_ends

NAMES = ["a.csv", "sample_12.csv", "sample_x.csv", "scan.TIF", "notes", "run_1.xlsx", "x.csv.bak"]
MIMES = ["text/csv", "text/plain", "image/tiff", "application/zip", "inode/x-empty"]


def random_file(i: int, rng: random.Random) -> MatchFile:
    space = rng.choice(["a", "b", ""])
    name = rng.choice(NAMES)
    folder = f"/s/{space}/d{rng.randrange(3)}"
    metadata: dict[str, Any] = rng.choice(
        [{}, {"lab": {"n": rng.randrange(10), "tags": ["x", "y"]}, "who": "ann"}, {"lab": "z"}]
    )
    return MatchFile(
        id=i,
        name=name,
        path=f"{folder}/{name}",
        space=space,
        dataset=folder,
        mime_type=rng.choice(MIMES),
        size=rng.choice([0, 1, 10, 100, 1000, 10**6]),
        owner=rng.choice(["ann", "bob"]),
        group=rng.choice(["bio", "geo"]),
        metadata=metadata,
    )


def random_criteria(rng: random.Random) -> Criteria:
    options: list[dict[str, Any]] = [
        {"name": rng.choice([r".*\.csv", r"sample_[0-9]+\.csv", "sam.*", fnmatch.translate("*.csv"),
                             r"(a|run_1)\..*", r"(?i)scan\.tif", r"(.)\.csv", "notes"])},
        {"mime": rng.choice(["text/csv", "text/*", "image/*", "inode/x-empty"])},
        {"size_min": rng.choice([0, 10, 1000])},
        {"size_max": rng.choice([0, 10, 1000])},
        {"space": rng.choice(["a", "b", ""])},
        {"dataset": rng.choice(["/s/a/d0", "/s/b/d1"])},
        {"path_prefix": rng.choice(["/s/a/", "/s/b/d1/sam", "/s/"])},
        {"owner": "ann"},
        {"group": "geo"},
        {"metadata": [rng.choice([
            {"path": "lab.n", "op": "range", "min": 3, "max": 6},
            {"path": "lab.tags", "op": "contains", "value": "x"},
            {"path": "lab", "op": "contains", "value": "z"},
            {"path": "who", "op": "equals", "value": "ann"},
            {"path": "$.lab.tags.1", "op": "exists"},
        ])]},
    ]  # fmt: skip
    data: dict[str, Any] = {}
    for option in rng.sample(options, rng.randrange(0, 4)):
        data |= option
    if "size_min" in data and "size_max" in data and data["size_min"] > data["size_max"]:
        del data["size_max"]
    if rng.random() < 0.2:
        data["op"] = "or"
    return parse_criteria(data)


@pytest.mark.parametrize("seed", range(5))
def test_same_answers_as_the_plain_loop(seed: int) -> None:
    rng = random.Random(seed)
    feeds = [(i, random_criteria(rng)) for i in range(1, 120)]
    files = [random_file(i, rng) for i in range(400)]
    matcher = Matcher(feeds)
    for file in files:
        assert matcher.match(file) == [fid for fid, c in feeds if matches(c, file)], file


@pytest.mark.parametrize("seed", range(3))
def test_or_feeds_indexed_by_each_criterion_give_the_plain_answers(seed: int) -> None:
    rng = random.Random(100 + seed)
    feeds: list[tuple[int, Criteria]] = []
    while len(feeds) < 80:
        criteria = random_criteria(rng)
        if len(criteria.given()) > 1:
            feeds.append((len(feeds) + 1, criteria.model_copy(update={"op": "or"})))
    files = [random_file(i, rng) for i in range(400)]
    matcher = Matcher(feeds)
    for file in files:
        assert matcher.match(file) == [fid for fid, c in feeds if matches(c, file)], file


def test_a_file_meets_a_feed_of_its_criteria() -> None:
    file = MatchFile(1, "plate_7.xlsx", "/s/a/p/plate_7.xlsx", "a", "/s/a/p", "text/csv", 500,
                     "ann", "bio", {"lab": {"temp": 25.5}})  # fmt: skip
    feeds = [
        (1, parse_criteria({"name": r"plate_[0-9]+\.xlsx", "size_min": 100, "size_max": 1000})),
        (2, parse_criteria({"name": r"plate_[0-9]+\.xlsx", "size_max": 499})),
        (
            3,
            parse_criteria(
                {
                    "mime": "text/*",
                    "metadata": [{"path": "lab.temp", "op": "range", "min": 20, "max": 30}],
                }
            ),
        ),
        (4, parse_criteria({"mime": "image/*"})),
        (5, parse_criteria({})),
        (6, parse_criteria({"op": "or", "mime": "image/*", "owner": "ann"})),
        (7, parse_criteria({"path_prefix": "/s/a/p/plate", "group": "bio"})),
        (8, parse_criteria({"path_prefix": "/s/a/q/", "group": "bio"})),
    ]
    assert Matcher(feeds).match(file) == [1, 3, 5, 6, 7]


@pytest.mark.parametrize(
    ("pattern", "ends"),
    [
        (r".*\.csv", ("", ".csv")),
        (r"sample_[0-9]+\.csv", ("sample_", ".csv")),
        (fnmatch.translate("*.xlsx"), ("", ".xlsx")),
        ("a|bc", ("", "")),
        ("(?i)abc", ("", "")),
        ("abc?", ("ab", "")),
        ("ab{2}c", ("a", "c")),
        (r"x\d+y", ("x", "y")),
        (r"[]a]bc", ("", "bc")),
    ],
)
def test_literal_ends_are_required_text(pattern: str, ends: tuple[str, str]) -> None:
    assert literal_ends(pattern) == ends
