"""Benchmark: the server under concurrent API clients and live event streams while a job trains.

    python bench/load.py [--seconds 60] [--clients 50] [--subscribers 20] [--think 0.5]
    python bench/load.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Loopback only and bounded in time. The bench starts `tuneforge serve` itself on a free port of
127.0.0.1 with a fresh data folder (local accounts, the job runner on, no model warmed at start)
and a fresh database: SQLite in that folder by default; with `--database-url`, a new database
on that PostgreSQL server (the URL's own database is only used to create it), dropped at the end.

It then makes a user with data (three small uploaded datasets, one of them processed) and starts
a training job that outlasts the window (tiny-random-gemma3, the test model, many steps). Once
the job reports its first step, for `--seconds`:

* `--clients` API clients each repeat a request picked at random with the weights of `ACTIONS`
  (what the web pages ask for: job and dataset lists and pages, the running job's metrics,
  dataset rows, a mapping preview, the model list and catalog, now and then an upload of a
  small file and its deletion), waiting `--think` seconds on average between two requests;
* `--subscribers` clients follow the running job's event stream (`GET /jobs/{id}/events`),
  reconnecting with `Last-Event-ID` as a browser's EventSource does if a stream breaks.

Then the job is cancelled, the subscribers read on until the stream's `end`, and each one's
event ids are compared with the job's whole event list read from the API afterwards: the same
ids in the same order means no gap, duplicate or reordering.

Prints requests/s, p50/p99 latency per endpoint, the errors (any status an action does not
expect, any transport error or timeout), the delivery check, how late events reached the
subscribers, and the load average. Goals: no errors, p99 < 500 ms for reads on SQLite on the
2-core machine of bench/README.md, every event delivered. Always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
API = "/api/v1"
READ_P99_TARGET_MS = 500.0
MODEL = "tiny-random-gemma3"
COLOURS = ["red", "green", "blue", "amber", "violet", "teal", "ochre", "cyan", "rose", "gold"]


# -- what the clients measure --------------------------------------------------------------------
@dataclass
class Sample:
    endpoint: str
    seconds: float
    error: str | None  # None: the status the action expects


@dataclass
class Subscription:
    ids: list[int] = field(default_factory=list)
    #: Seconds from an event's row to its arrival, for events written after the first connect
    #: (older ones are history, read at once).
    lags: list[float] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")  # the latest arrival: seconds, and which event
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    ended: bool = False


@dataclass
class Fixture:
    """What the user owns when the window opens: datasets to read, the job that trains."""

    headers: dict[str, str]
    raw_ids: list[str]
    processed_id: str
    mapping: dict[str, Any]
    job_id: str = ""


@dataclass
class Outcome:
    samples: list[Sample]
    seconds: float
    subscriptions: list[Subscription]
    events: list[int]
    job_error: str | None  # why the job stopped before the window's end, if it did
    #: How late the bench's own event loop woke up (seconds): a busy client adds this much to
    #: the latencies it measures.
    client_lags: list[float]
    #: CPU seconds during the window of the web process and of its children (the job's worker).
    server_cpu: float
    worker_cpu: float
    loads: tuple[float, float]


# -- the user's data -----------------------------------------------------------------------------
def jsonl(rows: int, offset: int = 0) -> bytes:
    lines = [
        {"question": f"Which colour is number {i}?", "answer": f"Number {i} is {COLOURS[i % 10]}."}
        for i in range(offset, offset + rows)
    ]
    return "\n".join(json.dumps(line) for line in lines).encode()


def csv(rows: int) -> bytes:
    lines = ["prompt,response"] + [f"Say {i} twice,{i} {i}" for i in range(rows)]
    return "\n".join(lines).encode()


def expect(response: httpx.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


def prepare(url: str, token: str, steps: int) -> Fixture:
    """Three uploads (one processed, for training) and a training job of `steps` steps."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        files = [("colours.jsonl", jsonl(48)), ("echo.csv", csv(200)), ("more.jsonl", jsonl(100))]
        raws = [
            expect(client.post(f"{API}/datasets", files={"file": (n, io.BytesIO(b))}), 201)
            for n, b in files
        ]
        config = {"mapping": raws[0]["mapping"], "split": {"test_size": 0.25, "seed": 1}}
        processed = expect(client.post(f"{API}/datasets/{raws[0]['id']}/process", json=config), 201)
        spec = {
            "base_model": MODEL,
            "dataset_id": processed["id"],
            "max_steps": steps,
            "batch_size": 2,
            "max_length": 64,
            "check_examples": 0,
        }
        job = expect(client.post(f"{API}/jobs", json={"kind": "train", "spec": spec}), 201)
        fixture = Fixture(headers, [r["id"] for r in raws], processed["id"], raws[0]["mapping"])
        fixture.job_id = job["id"]
        return fixture


def wait_for_training(url: str, fixture: Fixture, timeout: float = 300) -> None:
    """Until the job has reported its first training step (the model is loaded)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, headers=fixture.headers, timeout=30) as client:
        while time.monotonic() < deadline:
            job = expect(client.get(f"{API}/jobs/{fixture.job_id}"), 200)
            if job["status"] != "running" and job["status"] != "queued":
                raise RuntimeError(f"The training job ended before the window: {job}")
            metrics = expect(client.get(f"{API}/jobs/{fixture.job_id}/metrics"), 200)
            if metrics["series"].get("loss"):
                return
            time.sleep(0.5)
    raise RuntimeError(f"The training job reported no step within {timeout:g} s")


# -- the API clients -----------------------------------------------------------------------------
Call = Callable[[httpx.AsyncClient, Fixture, random.Random], Awaitable[list[Sample]]]


async def timed(
    endpoint: str, request: Awaitable[httpx.Response], status: int = 200
) -> tuple[Sample, httpx.Response | None]:
    started = time.perf_counter()
    try:
        response = await request
    except httpx.HTTPError as exc:
        return Sample(endpoint, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"), None
    seconds = time.perf_counter() - started
    if response.status_code != status:
        return Sample(endpoint, seconds, f"{response.status_code} {response.text[:200]}"), response
    return Sample(endpoint, seconds, None), response


def read(template: str, **params: Any) -> Call:
    """A GET of the API path `template`, its `{job}`, `{raw}` (one of the uploads, at random)
    and `{processed}` filled from the fixture; labelled with `{id}` in their place."""
    endpoint = "GET " + API + re.sub(r"\{\w+\}", "{id}", template)

    async def call(client: httpx.AsyncClient, f: Fixture, rng: random.Random) -> list[Sample]:
        path = API + template.format(
            job=f.job_id, raw=rng.choice(f.raw_ids), processed=f.processed_id
        )
        sample, _ = await timed(endpoint, client.get(path, params=params))
        return [sample]

    return call


async def preview(client: httpx.AsyncClient, f: Fixture, rng: random.Random) -> list[Sample]:
    path = f"{API}/datasets/{f.raw_ids[0]}/preview"  # the mapping is its own
    endpoint = f"POST {API}/datasets/{{id}}/preview"
    sample, _ = await timed(endpoint, client.post(path, json=f.mapping))
    return [sample]


async def upload(client: httpx.AsyncClient, f: Fixture, rng: random.Random) -> list[Sample]:
    """A small upload, then its deletion (the user's own, so nothing else is touched)."""
    body = jsonl(20, offset=rng.randrange(1000))
    files = {"file": (f"upload-{uuid.uuid4().hex[:6]}.jsonl", io.BytesIO(body))}
    request = client.post(f"{API}/datasets", files=files)
    sample, response = await timed(f"POST {API}/datasets", request, 201)
    if response is None or sample.error:
        return [sample]
    path = f"{API}/datasets/{response.json()['id']}"
    deleted, _ = await timed(f"DELETE {API}/datasets/{{id}}", client.delete(path), 204)
    return [sample, deleted]


#: What a person's pages ask for, and how often (weights): the job page polls the job and its
#: metrics, the lists and a dataset's pages are read, a mapping is previewed now and then, an
#: upload is rare.
ACTIONS: list[tuple[Call, int]] = [
    (read("/jobs"), 12),
    (read("/jobs/{job}"), 14),
    (read("/jobs/{job}/metrics"), 10),
    (read("/datasets"), 10),
    (read("/datasets/{raw}"), 10),
    (read("/datasets/{raw}/rows", limit=20), 10),
    (read("/datasets/{processed}/stats"), 4),
    (preview, 6),
    (read("/models"), 6),
    (read("/catalog"), 4),
    (read("/me"), 4),
    (upload, 3),
]
CALLS = [call for call, _ in ACTIONS]
WEIGHTS = [weight for _, weight in ACTIONS]


async def api_client(url: str, f: Fixture, seed: int, think: float, until: float) -> list[Sample]:
    rng = random.Random(seed)  # noqa: S311 (which request comes next, no secret)
    samples: list[Sample] = []
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=url, headers=f.headers, timeout=30) as client:
        await asyncio.sleep(rng.uniform(0, think))  # not all at once
        while loop.time() < until:
            (call,) = rng.choices(CALLS, WEIGHTS)
            samples += await call(client, f, rng)
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
    return samples


# -- the event stream's subscribers --------------------------------------------------------------
def written_at(event: dict[str, Any]) -> datetime:
    made = datetime.fromisoformat(event["created_at"])
    return made if made.tzinfo else made.replace(tzinfo=UTC)


async def subscriber(url: str, f: Fixture, stop: asyncio.Event) -> Subscription:
    """Follow the job's events until the stream's `end`, as a browser's EventSource would."""
    seen = Subscription()
    connected = datetime.now(UTC)
    timeout = httpx.Timeout(30, read=60)  # keep-alives come every 15 s
    async with httpx.AsyncClient(base_url=url, headers=f.headers, timeout=timeout) as client:
        while not seen.ended and not stop.is_set():
            resume = {"Last-Event-ID": str(seen.ids[-1])} if seen.ids else {}
            try:
                async with client.stream(
                    "GET", f"{API}/jobs/{f.job_id}/events", headers=resume
                ) as response:
                    if response.status_code != 200:
                        seen.errors.append(
                            f"{response.status_code} {(await response.aread())[:200]!r}"
                        )
                        return seen
                    kind = ""
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:") and kind == "end":
                            seen.ended = True
                        elif line.startswith("data:"):
                            event = json.loads(line[5:])
                            seen.ids.append(event["id"])
                            lag = datetime.now(UTC) - written_at(event)
                            if written_at(event) > connected:
                                seen.lags.append(lag.total_seconds())
                                which = f"{event['type']} event {event['id']}"
                                seen.slowest = max(seen.slowest, (lag.total_seconds(), which))
            except httpx.HTTPError as exc:
                seen.errors.append(f"{type(exc).__name__}: {exc}")
            if not seen.ended:
                seen.reconnects += 1
                await asyncio.sleep(0.5)
    return seen


# -- one run -------------------------------------------------------------------------------------
async def loop_lags(until: float, lags: list[float], every: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        woken = loop.time() + every
        await asyncio.sleep(every)
        lags.append(loop.time() - woken)


def cpu_seconds(process: psutil.Process) -> tuple[float, float]:
    """CPU seconds so far of `process` and of its living children."""
    own = process.cpu_times()
    children = 0.0
    for child in process.children(recursive=True):
        with suppress(psutil.Error):
            times = child.cpu_times()
            children += times.user + times.system
    return own.user + own.system, children


async def window(url: str, f: Fixture, args: argparse.Namespace, server: psutil.Process) -> Outcome:
    stop = asyncio.Event()
    subscribers = [asyncio.create_task(subscriber(url, f, stop)) for _ in range(args.subscribers)]
    loop = asyncio.get_running_loop()
    loads = os.getloadavg()[0]
    cpu = cpu_seconds(server)
    started = loop.time()
    until = started + args.seconds
    clients = [api_client(url, f, seed, args.think, until) for seed in range(args.clients)]
    lags: list[float] = []
    ticker = asyncio.create_task(loop_lags(until, lags))
    samples = [s for batch in await asyncio.gather(*clients) for s in batch]
    await ticker
    seconds = loop.time() - started
    async with httpx.AsyncClient(base_url=url, headers=f.headers, timeout=30) as client:
        job = expect(await client.get(f"{API}/jobs/{f.job_id}"), 200)
        load = (loads, os.getloadavg()[0])
        cpu_after = cpu_seconds(server)
        stopped = None if job["status"] == "running" else f"{job['status']}: {job['error']}"
        if stopped is None:
            expect(await client.post(f"{API}/jobs/{f.job_id}/cancel"), 200)
        try:
            subscriptions = await asyncio.wait_for(asyncio.gather(*subscribers), timeout=120)
        except TimeoutError:
            stop.set()
            subscriptions = list(await asyncio.gather(*subscribers))
        everything = await client.get(
            f"{API}/jobs/{f.job_id}/events", params={"follow": "false"}, timeout=60
        )
    events = [int(line[3:]) for line in everything.text.splitlines() if line.startswith("id:")]
    return Outcome(
        samples=samples,
        seconds=seconds,
        subscriptions=subscriptions,
        events=events,
        job_error=stopped,
        loads=load,
        client_lags=lags,
        server_cpu=cpu_after[0] - cpu[0],
        worker_cpu=cpu_after[1] - cpu[1],
    )


@contextmanager
def database(url: str | None, data: Path) -> Iterator[str]:
    """SQLite in `data`, or a new database on the PostgreSQL server of `url`, dropped after."""
    if url is None:
        yield f"sqlite:///{data / 'tuneforge.db'}"
        return
    from sqlalchemy import make_url, text

    from tuneforge.db.session import make_engine

    name = f"tuneforge_load_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def user_token(database_url: str) -> str:
    """A user of the fresh database (migrated here) and an API token of theirs."""
    from tuneforge.db.session import make_engine, make_sessionmaker, migrate, transaction
    from tuneforge.services import accounts

    engine = make_engine(database_url)
    migrate(engine)
    with transaction(make_sessionmaker(engine)) as session:
        user = accounts.create_user(session, "load", "password-load-bench")
        _, secret = accounts.create_token(session, user, "load bench")
    engine.dispose()
    return secret


def run(args: argparse.Namespace) -> Outcome:
    """Start the server, make the user's data and job, and measure one window."""
    sys.path.insert(0, str(ROOT))  # the test server's helpers
    from tests.server import server_env, server_process

    from tuneforge.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        with database(args.database_url, data) as database_url:
            settings = Settings(
                data_dir=data,
                database_url=database_url,
                model_cache_dir=args.models_dir or Settings().models_dir,
                warm_models=[],
            )
            token = user_token(database_url)
            with server_process(server_env(settings), timeout=120) as (url, process):
                fixture = prepare(url, token, args.steps)
                wait_for_training(url, fixture)
                return asyncio.run(window(url, fixture, args, psutil.Process(process.pid)))


# -- the report ----------------------------------------------------------------------------------
def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def is_read(endpoint: str) -> bool:
    return endpoint.startswith("GET") or endpoint.endswith("/preview")


def delivered(outcome: Outcome) -> list[bool]:
    return [s.ids == outcome.events and s.ended for s in outcome.subscriptions]


def report(outcome: Outcome, args: argparse.Namespace) -> None:
    database = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"{args.clients} API clients (think {args.think:g} s on average) + {args.subscribers} "
        f"event subscribers, {outcome.seconds:.0f} s, {database}, a {MODEL} training job "
        f"running throughout: {'NO, ' + outcome.job_error if outcome.job_error else 'yes'}"
    )
    print(f"{'endpoint':<36} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    groups: dict[str, list[Sample]] = {}
    for sample in outcome.samples:
        groups.setdefault(sample.endpoint, []).append(sample)
    reads: list[float] = []
    for endpoint, samples in sorted(groups.items(), key=lambda item: -len(item[1])):
        ms = [s.seconds * 1000 for s in samples]
        reads += ms if is_read(endpoint) else []
        errors = sum(1 for s in samples if s.error)
        p50, p99 = percentile(ms, 0.5), percentile(ms, 0.99)
        print(f"{endpoint:<36} {len(ms):>9} {p50:>8.1f} {p99:>8.1f} {errors:>7}")
    failed = [s for s in outcome.samples if s.error]
    total = len(outcome.samples)
    read_p99 = percentile(reads, 0.99)
    print(
        f"{'all reads':<36} {len(reads):>9} {percentile(reads, 0.5):>8.1f} {read_p99:>8.1f}\n"
        f"{total} requests, {total / outcome.seconds:.1f} requests/s, {len(failed)} errors"
    )
    for sample in failed[:5]:
        print(f"  error: {sample.endpoint}: {sample.error}")
    ok = delivered(outcome)
    lags = [lag * 1000 for s in outcome.subscriptions for lag in s.lags]
    reconnects = sum(s.reconnects for s in outcome.subscriptions)
    stream_errors = [e for s in outcome.subscriptions for e in s.errors]
    print(
        f"events: the job reported {len(outcome.events)}; {sum(ok)}/{len(ok)} subscribers "
        f"received every one in order (no gap, duplicate or reordering); delivered "
        f"{percentile(lags, 0.5):.0f} ms (p50) / {percentile(lags, 0.99):.0f} ms (p99) after "
        f"their row was written; {reconnects} reconnects"
    )
    late, which = max((s.slowest for s in outcome.subscriptions), default=(0.0, "none"))
    print(f"  the latest arrival: {which}, {late * 1000:.0f} ms after its row was written")
    for subscription in [s for s, good in zip(outcome.subscriptions, ok, strict=True) if not good][
        :3
    ]:
        got, want = set(subscription.ids), set(outcome.events)
        print(
            f"  a subscriber: {len(subscription.ids)} events, {len(want - got)} missing, "
            f"{len(subscription.ids) - len(got)} duplicates, ended: {subscription.ended}"
        )
    for error in stream_errors[:3]:
        print(f"  stream error: {error}")
    print(
        f"goals: no errors: {'yes' if not failed else 'NO'}; read p99 < "
        f"{READ_P99_TARGET_MS:g} ms: {'yes' if read_p99 < READ_P99_TARGET_MS else 'NO'}; "
        f"every event delivered: {'yes' if all(ok) and outcome.events else 'NO'}"
    )
    start, end = outcome.loads
    lag = percentile([lag * 1000 for lag in outcome.client_lags], 0.99)
    print(f"the bench's own event loop woke up {lag:.0f} ms late (p99): part of every latency")
    per_request = outcome.server_cpu / max(total, 1) * 1000
    print(
        f"CPU in the window: web process {outcome.server_cpu:.1f} s ({per_request:.1f} ms per "
        f"request, event streams included), the job's worker {outcome.worker_cpu:.1f} s"
    )
    print(
        f"load average (1 min) at the start and end of the window: {start:.1f} / {end:.1f} "
        f"on {os.cpu_count()} CPUs"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the window")
    parser.add_argument("--clients", type=int, default=50, help="concurrent API clients")
    parser.add_argument("--subscribers", type=int, default=20, help="event stream followers")
    parser.add_argument(
        "--think", type=float, default=0.5, help="mean seconds a client waits between two requests"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=100_000,
        help="the training job's steps (it is cancelled after the window)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to make a fresh database on (default: SQLite)",
    )
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="the model cache (default: the settings')"
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    # Stopped from outside, it still stops its server and drops its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    try:
        report(run(args), args)
    except Exception as exc:  # the benchmark reports; it does not fail the caller
        print(f"The load benchmark could not run: {exc}")


if __name__ == "__main__":
    main()
