from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from redis.exceptions import RedisError

from tools.bench.environment import REDIS_DBS, BenchEnvironment, databases_apart_from
from tools.bench.load import wrk_available
from tools.bench.report import Report
from tools.bench.runner import Bench, Options


def _numbers(value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"not a comma-separated list of whole numbers: {value!r}") from None
    if not numbers or min(numbers) < 1:
        raise ValueError(f"give whole numbers of at least 1: {value!r}")
    return numbers


class Command(BaseCommand):
    help = ("Measure what the proxy adds: the built-in simulator, straight and through Tokonomics as production "
            "runs it (budgets, rate limits and usage recording on), at several concurrencies, streamed and not.")
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--duration", type=float, default=5.0, help="seconds per load (default: 5)")
        parser.add_argument("--workers", type=_numbers, default=(1, 2),
                            help="proxy workers: the first for the latency table, all for the scaling runs "
                                 "(default: 1,2)")
        parser.add_argument("--concurrency", type=_numbers, default=(1, 16, 64),
                            help="connections held by the load generator (default: 1,16,64)")
        parser.add_argument("--server", choices=("uvicorn", "daphne"), action="append",
                            help="uvicorn (production, the default); give --server daphne to compare Daphne too")
        parser.add_argument("--load-generator", choices=("auto", "wrk", "builtin"), default="auto",
                            help="wrk when installed (auto), or the built-in aiohttp client")
        parser.add_argument("--no-pin", action="store_true", help="do not pin the proxy and the load to separate cores")
        parser.add_argument("--streams-open", type=int, default=0, metavar="N",
                            help="hold N slow streams open through the proxy and report RSS per worker")
        parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                            help="then a steady load for MINUTES, sampling RSS every 30 s, reporting its drift")
        parser.add_argument("--compare-litellm", type=Path, metavar="PATH",
                            help="also measure a LiteLLM proxy: its `litellm` command or its virtualenv")
        parser.add_argument("--smoke", action="store_true",
                            help="a few seconds in all (CI): 1-second loads at 1 and 16 connections, one worker, "
                                 "16 streams held open; fails unless every figure is sane")
        parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
        parser.add_argument("--redis-db", type=int,
                            help="Redis database of the run, on REDIS_URL's server (default: the first of "
                                 f"{', '.join(map(str, REDIS_DBS))} no other run holds); its tk:* keys are deleted "
                                 "before and after")
        parser.add_argument("--database-url", help="database of the run (default: a throw-away SQLite file)")
        parser.add_argument("--enforcement", choices=("on", "off"), default="on",
                            help="off: an account with no budgets, rate limits or plan limit (recording stays on)")
        parser.add_argument("--rate-limits", choices=("on", "off"), default="on",
                            help="with enforcement on, off: budgets and the plan limit without the key's rate limits "
                                 "(which budget leases never cover: docs/performance.md)")
        parser.add_argument("--app", choices=("proxy", "all"), default="proxy",
                            help="proxy: proxy workers (tokonomics.proxy_asgi, the default); all: the application "
                                 "that serves the web app too (tokonomics.asgi)")
        parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, database)")

    def handle(self, *args: Any, **options: Any) -> None:
        bench_options = self._options(options)
        if options["json"]:
            # Found out now, not after minutes of loads: the JSON file's folder (var/ in a fresh clone) may not exist.
            try:
                options["json"].parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CommandError(f"cannot write the JSON report to {options['json']}: {exc}") from None
        databases = databases_apart_from(
            settings.REDIS_URL, (options["redis_db"],) if options["redis_db"] is not None else REDIS_DBS
        )
        if not databases:
            raise CommandError("the benchmark would share this instance's Redis database; choose another with "
                               "--redis-db")
        # The lock outlives a crashed run by a little: long enough for the longest run asked for.
        hold_seconds = int(3600 + bench_options.soak_minutes * 60)
        try:
            env = BenchEnvironment(base_dir=Path(settings.BASE_DIR), redis_server_url=settings.REDIS_URL,
                                   redis_dbs=databases, database_url=options["database_url"], keep=options["keep"],
                                   hold_seconds=hold_seconds)
        except (RuntimeError, OSError, RedisError) as exc:
            raise CommandError(str(exc)) from None
        try:
            report = Bench(options=bench_options, env=env, base_dir=Path(settings.BASE_DIR),
                           say=self.stderr.write).run()
        except (RuntimeError, OSError, RedisError) as exc:
            env.keep = True  # its logs say what went wrong
            raise CommandError(f"{exc}\n(logs and database kept in {env.workdir})") from None
        finally:
            env.close()
        self.stdout.write(report.table())
        if options["json"]:
            options["json"].write_bytes(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2))
        if options["smoke"]:
            problems = sanity_problems(report)
            if problems:
                raise CommandError("the smoke benchmark's figures are not sane:\n  " + "\n  ".join(problems))
            self.stderr.write("smoke benchmark: every figure is sane")

    def _options(self, options: dict[str, Any]) -> Options:
        tool = options["load_generator"]
        if tool == "auto":
            tool = "wrk" if wrk_available() else "builtin"
        elif tool == "wrk" and not wrk_available():
            raise CommandError("wrk is not installed (Debian: apt-get install wrk); use --load-generator builtin")
        bench = Options(
            duration=options["duration"],
            workers=options["workers"],
            concurrency=options["concurrency"],
            servers=tuple(dict.fromkeys(["uvicorn", *(options["server"] or [])])),
            tool=tool,
            pin=not options["no_pin"],
            litellm=options["compare_litellm"],
            streams_open=options["streams_open"],
            soak_minutes=options["soak"],
            enforcement=options["enforcement"] == "on",
            rate_limits=options["rate_limits"] == "on",
            app=options["app"],
        )
        if options["smoke"]:
            bench.duration, bench.workers, bench.concurrency = 1.0, (1,), (1, 16)
            bench.streams_open = bench.streams_open or 16
        if bench.duration <= 0 or bench.streams_open < 0 or bench.soak_minutes < 0:
            raise CommandError("--duration must be positive, --streams-open and --soak not negative")
        if not hasattr(os, "sched_setaffinity"):
            bench.pin = False
        return bench


def sanity_problems(report: Report) -> list[str]:
    """What would make a smoke run's figures meaningless: failed calls, lost usage, absurd readings."""
    problems = []
    for cell in report.cells:
        where = f"{cell.target} {cell.mode} c={cell.concurrency}"
        latency = cell.load.latency
        if cell.load.requests < 10:
            problems.append(f"{where}: only {cell.load.requests} requests completed")
        if cell.load.errors:
            problems.append(f"{where}: {cell.load.describe_failures()} failed requests")
        if not 0 < latency.p50_us <= latency.p99_us < 5_000_000:
            problems.append(f"{where}: latency p50 {latency.p50_us} µs, p99 {latency.p99_us} µs")
        if cell.proxy_cpu_us is not None and not 0 < cell.proxy_cpu_us < 50_000:
            problems.append(f"{where}: proxy CPU {cell.proxy_cpu_us:.0f} µs per request")
        if cell.proxy_cpu_us is not None and not all(10 < mb < 2000 for mb in cell.rss_mb):
            problems.append(f"{where}: RSS per worker {cell.rss_mb} MB")
        if not cell.usage_recorded:
            problems.append(f"{where}: {cell.usage_events} usage events for {cell.load.requests} calls")
    for name, load in report.first_event.items():
        if load.first_event is None or load.first_event.p50_us <= 0:
            problems.append(f"{name}: no first streamed event measured")
    if report.streams_open is not None and report.streams_open.opened != report.streams_open.count:
        problems.append(f"only {report.streams_open.opened} of {report.streams_open.count} streams opened")
    if not report.cells:
        problems.append("nothing was measured")
    return problems
