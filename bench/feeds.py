"""Feed matching benchmark: storeflow's indexed matcher against the two plain ways.

    .venv/bin/python -m bench.feeds                      # 100,000 files x 200 feeds
    .venv/bin/python -m bench.feeds --files 20000 --sql-files 100 --no-sql

One run, one core, the same generated catalog (seeded: every run sees the same files
and feeds) for all three:

- matcher: tasks/matcher.Matcher, built once, `match(file)` per file event.
- naive: every feed's criteria evaluated for every file in plain Python
  (models/feed_criteria.matches), as a loop over feeds would.
- sql: one query per feed per file on PostgreSQL (127.0.0.1:5432, a scratch
  database made and dropped here), what Clowder v2 does with one search per feed per
  upload.  Twenty million round trips take hours, so it runs on `--sql-files` files
  and its time per event is scaled to the whole set (printed as such).

Every file's matching feeds must be the same from the three (checked; a difference
exits 1).  Targets (issue 13): matcher >= 20x the naive loop, about a second in all.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from storeflow.models.feed_criteria import Criteria, MatchFile, matches, parse_criteria
from storeflow.tasks.matcher import Matcher

MIMES = [
    ("text/plain", "txt"),
    ("text/csv", "csv"),
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/tiff", "tif"),
    ("application/pdf", "pdf"),
    ("application/json", "json"),
    ("application/zip", "zip"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    ("video/mp4", "mp4"),
    ("audio/x-wav", "wav"),
    ("application/octet-stream", "bin"),
]
WORDS = ["sample", "scan", "run", "plate", "report", "raw", "img", "seq", "notes", "data"]
INSTRUMENTS = ["confocal", "sem", "tem", "nmr", "hplc", "xrd"]
SPACES = [f"lab{i:02d}" for i in range(20)]
OWNERS = [f"user{i}" for i in range(10)]
GROUPS = ["bio", "chem", "phys", "geo", "admin"]
ROOT = "/srv/storeflow/spaces"


def make_files(n: int, rng: random.Random) -> list[MatchFile]:
    files = []
    for i in range(n):
        mime, ext = rng.choice(MIMES)
        if rng.random() < 0.05:  # a name that says something else than the content
            ext = rng.choice(MIMES)[1]
        space = rng.choice(SPACES)
        folder = f"{ROOT}/{space}/{rng.choice(WORDS)}{rng.randrange(50)}"
        name = f"{rng.choice(WORDS)}_{i}.{ext}"
        metadata: dict[str, Any] = {}
        if rng.random() < 0.3:
            metadata = {
                "lab": {"instrument": rng.choice(INSTRUMENTS), "temp": rng.uniform(-80, 120)},
                "tags": rng.sample(WORDS, 2),
            }
        files.append(
            MatchFile(
                id=i + 1,
                name=name,
                path=f"{folder}/{name}",
                space=space,
                dataset=folder,
                mime_type=mime,
                size=int(10 ** rng.uniform(0, 9)),
                owner=rng.choice(OWNERS),
                group=rng.choice(GROUPS),
                metadata=metadata,
            )
        )
    return files


def _size_range(rng: random.Random) -> dict[str, int]:
    low = int(10 ** rng.uniform(0, 7))
    return {"size_min": low, "size_max": low * rng.choice([10, 100, 1000])}


def make_feeds(n: int, rng: random.Random) -> list[tuple[int, Criteria]]:
    """Mixed criteria, in the proportions a site's feeds might have."""
    feeds: list[dict[str, Any]] = [{}]  # one feed for every file
    while len(feeds) < n:
        mime, ext = rng.choice(MIMES)
        roll = rng.random()
        if roll < 0.25:
            feeds.append({"mime": mime, **_size_range(rng)})
        elif roll < 0.40:
            feeds.append({"mime": mime.split("/")[0] + "/*", "name": f"{rng.choice(WORDS)}_.*"})
        elif roll < 0.60:
            pattern = rng.choice([f".*\\.{ext}", f"{rng.choice(WORDS)}_[0-9]+\\.{ext}"])
            feeds.append({"name": pattern} | (_size_range(rng) if rng.random() < 0.5 else {}))
        elif roll < 0.75:
            feeds.append({"space": rng.choice(SPACES), "owner": rng.choice(OWNERS)})
        elif roll < 0.85:
            space = rng.choice(SPACES)
            feeds.append({"path_prefix": f"{ROOT}/{space}/{rng.choice(WORDS)}1", "group": "bio"})
        elif roll < 0.95:
            condition = rng.choice(
                [
                    {"path": "lab.instrument", "op": "equals", "value": rng.choice(INSTRUMENTS)},
                    {"path": "lab.temp", "op": "range", "min": 20, "max": 40},
                    {"path": "tags", "op": "contains", "value": rng.choice(WORDS)},
                    {"path": "lab", "op": "exists"},
                ]
            )
            feeds.append({"mime": mime.split("/")[0] + "/*", "metadata": [condition]})
        else:
            feeds.append({"op": "or", "mime": mime, "name": f".*\\.{rng.choice(MIMES)[1]}"})
    return [(i + 1, parse_criteria(c)) for i, c in enumerate(feeds)]


def run_matcher(feeds: list[tuple[int, Criteria]], files: list[MatchFile]) -> list[list[int]]:
    matcher = Matcher(feeds)
    return [matcher.match(f) for f in files]


def run_naive(feeds: list[tuple[int, Criteria]], files: list[MatchFile]) -> list[list[int]]:
    return [[fid for fid, c in feeds if matches(c, f)] for f in files]


# -- one SQL query per feed per file -------------------------------------------------


def _json_path(path: str) -> str:
    return "{" + ",".join(path.removeprefix("$").removeprefix(".").split(".")) + "}"


def feed_sql(c: Criteria) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of one feed's search over catalog_files (PostgreSQL)."""
    terms: list[str] = []
    params: dict[str, Any] = {}

    def bind(value: Any) -> str:
        key = f"p{len(params)}"
        params[key] = value
        return f":{key}"

    if c.name is not None:
        terms.append(f"f.name ~ {bind('^(?:' + c.name + ')$')}")
    if c.mime is not None:
        if c.mime.endswith("/*"):
            terms.append(f"f.mime_type LIKE {bind(c.mime[:-1] + '%')}")
        else:
            terms.append(f"f.mime_type = {bind(c.mime)}")
    if c.size_min is not None:
        terms.append(f"f.size >= {bind(c.size_min)}")
    if c.size_max is not None:
        terms.append(f"f.size <= {bind(c.size_max)}")
    for column in ("space", "dataset", "owner", "group"):
        value = getattr(c, column)
        if value is not None:
            terms.append(f'f."{column}" = {bind(value)}')
    if c.path_prefix is not None:
        terms.append(f"starts_with(f.path, {bind(c.path_prefix)})")
    for m in c.metadata:
        at = f"(m.content::jsonb #> {bind(_json_path(m.path))})"
        if m.op == "exists":
            test = f"{at} IS NOT NULL"
        elif m.op == "equals":
            test = f"{at} = CAST({bind(json.dumps(m.value))} AS jsonb)"
        elif m.op == "contains":
            test = (
                f"CASE jsonb_typeof({at}) WHEN 'string' THEN strpos({at} #>> '{{}}', "
                f"{bind(str(m.value))}) > 0 WHEN 'array' THEN {at} @> "
                f"CAST({bind(json.dumps([m.value]))} AS jsonb) ELSE false END"
            )
        else:
            number = f"CASE WHEN jsonb_typeof({at}) = 'number' THEN ({at} #>> '{{}}')::float END"
            low = "true" if m.min is None else f"{number} >= {bind(m.min)}"
            high = "true" if m.max is None else f"{number} <= {bind(m.max)}"
            test = f"COALESCE({low} AND {high}, false)"
        terms.append(f"EXISTS (SELECT 1 FROM catalog_metadata m WHERE m.file_id = f.id AND {test})")
    joined = (" AND " if c.op == "and" else " OR ").join(terms) or "true"
    return f"SELECT 1 FROM catalog_files f WHERE f.id = :file_id AND ({joined})", params


@contextmanager
def scratch_postgres() -> Iterator[str]:
    name = f"storeflow_bench_feeds_{uuid.uuid4().hex[:8]}"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c"]
    subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True, timeout=60)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from storeflow.models.db import engine_for

        engine_for(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}").dispose()
        subprocess.run(
            [*psql, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False, timeout=60
        )


def run_sql(
    url: str, feeds: list[tuple[int, Criteria]], files: list[MatchFile]
) -> tuple[list[list[int]], float]:
    """(matches, seconds spent querying) with the files inserted first (not timed)."""
    from sqlalchemy import text

    from storeflow.models.catalog import FileMetadataRow, FileRow
    from storeflow.models.db import engine_for, session_scope

    with session_scope(url) as session:
        now = datetime.now(UTC)
        for f in files:
            session.add(
                FileRow(
                    id=f.id,
                    path=f.path,
                    space=f.space,
                    name=f.name,
                    dataset=f.dataset,
                    mime_type=f.mime_type,
                    size=f.size,
                    owner=f.owner,
                    group=f.group,
                    mtime=now,
                )
            )
        session.flush()
        for f in files:
            if f.metadata:
                session.add(
                    FileMetadataRow(file_id=f.id, agent_type="user", agent="b", content=f.metadata)
                )
    statements = [(fid, *feed_sql(c)) for fid, c in feeds]
    compiled = [(fid, text(sql), params) for fid, sql, params in statements]
    found: list[list[int]] = []
    with engine_for(url).connect() as connection:
        started = time.perf_counter()
        for f in files:
            hits = []
            for fid, query, params in compiled:
                if connection.execute(query, {**params, "file_id": f.id}).first() is not None:
                    hits.append(fid)
            found.append(hits)
        elapsed = time.perf_counter() - started
    return found, elapsed


def _load(values: tuple[float, float, float] | None = None) -> str:
    return " ".join(f"{v:.2f}" for v in (values or os.getloadavg()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--sql-files", type=int, default=200, help="files the SQL way runs on")
    parser.add_argument("--no-sql", action="store_true", help="skip the PostgreSQL baseline")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    files = make_files(args.files, rng)
    feeds = make_feeds(args.feeds, rng)

    started = time.perf_counter()
    Matcher(feeds)
    build = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    fast = run_matcher(feeds, files)
    matcher_s, matcher_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    naive = run_naive(feeds, files)
    naive_s, naive_cpu = time.perf_counter() - started, time.process_time() - cpu
    hits = sum(len(m) for m in fast)
    # CPU time too: on a shared machine the wall clock counts other processes' turns.
    print(f"{len(files):,} file events x {len(feeds)} feeds, {hits:,} matches")
    # On a shared machine the wall clock counts other processes' turns: the load says
    # how far to trust it (CPU seconds are this process's own).
    print(f"  load average before: {_load(load_before)}; after the two loops: {_load()}")
    print(
        f"  matcher : {matcher_s:8.3f} s wall, {matcher_cpu:8.3f} s CPU "
        f"({matcher_cpu / len(files) * 1e6:6.1f} us CPU/event; built in {build * 1000:.1f} ms)"
    )
    print(
        f"  naive   : {naive_s:8.3f} s wall, {naive_cpu:8.3f} s CPU "
        f"({naive_cpu / len(files) * 1e6:6.1f} us CPU/event)"
    )
    print(
        f"  matcher vs naive: {naive_s / matcher_s:6.1f}x wall, {naive_cpu / matcher_cpu:6.1f}x "
        "CPU (target >= 20x)"
    )
    if fast != naive:
        wrong = next(i for i, (a, b) in enumerate(zip(fast, naive, strict=True)) if a != b)
        print(f"MISMATCH on file {files[wrong]}: matcher {fast[wrong]} naive {naive[wrong]}")
        return 1
    if not args.no_sql:
        sample = files[: args.sql_files]
        with scratch_postgres() as url:
            by_sql, sql_s = run_sql(url, feeds, sample)
        per_event = sql_s / len(sample)
        print(
            f"  sql     : {sql_s:8.3f} s for {len(sample)} events x {len(feeds)} queries "
            f"({per_event * 1e6:8.1f} us/event; {per_event * len(files):,.0f} s scaled to "
            f"{len(files):,})"
        )
        print(f"  matcher vs sql: {per_event * len(files) / matcher_s:6.0f}x faster")
        print(f"  load average after the SQL baseline: {_load()}")
        if by_sql != fast[: len(sample)]:
            wrong = next(i for i, (a, b) in enumerate(zip(by_sql, fast, strict=False)) if a != b)
            print(f"MISMATCH (sql) on {sample[wrong]}: sql {by_sql[wrong]} matcher {fast[wrong]}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
