from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tools import scale


class Command(BaseCommand):
    help = ("Seed a dedicated account with millions of realistic usage records and their rollups (PostgreSQL "
            "only), then time every dashboard page, partial, CSV export and usage API call against them.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--records", type=int, default=10_000_000,
                            help="records the account should hold; only the missing ones are added (default: 10M)")
        parser.add_argument("--account", default="scale", help="slug of the benchmark's own account (default: scale)")
        parser.add_argument("--days", type=int, default=90, help="the records span the last DAYS days (default: 90)")
        parser.add_argument("--batch-size", type=int, default=250_000, help="records per statement (default: 250k)")
        parser.add_argument("--repeat", type=int, default=7, help="timed requests per page, after one warm-up")
        parser.add_argument("--no-measure", action="store_true", help="only seed")
        parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH "
                                                                      "(- for stdout)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_measure"]:
            try:
                staticfiles_storage.url("tokonomics/app.css")
            except ValueError:
                raise CommandError("The pages are measured as production serves them: run "
                                   "`python manage.py collectstatic --noinput` first.") from None
        try:
            scale.require_postgresql()
            account = scale.scale_account_prepare(slug=options["account"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        started = time.monotonic()
        added = scale.usage_seed(account=account, total=options["records"], days=options["days"],
                                 batch_size=options["batch_size"], progress=self.stdout.write)
        seed_seconds = time.monotonic() - started
        if added:
            self.stdout.write(f"seeded {added:,} records in {scale.duration(seed_seconds)}")
        scale.counters_and_statistics_refresh(account=account, vacuum=bool(added), progress=self.stdout.write)
        sizes, server = scale.table_sizes(), scale.server_settings()
        self.stdout.write(scale.sizes_table(sizes))
        self.stdout.write(", ".join(f"{name} {value}" for name, value in server.items()))
        report: dict[str, Any] = {"account": account.slug, "records_added": added,
                                  "seed_seconds": round(seed_seconds, 1), "server": server, "tables": sizes,
                                  "bytes_per_record": scale.record_bytes(sizes)}
        wrong: list[str] = []
        if not options["no_measure"]:
            results = scale.dashboards_measure(account=account, repeat=options["repeat"])
            self.stdout.write(scale.results_table(results))
            report["pages"] = [r.as_dict() for r in results]
            slow = [r.name for r in results if r.median_ms > scale.TARGET_MS]
            self.stdout.write(f"over {scale.TARGET_MS} ms (median): {', '.join(slow)}" if slow
                              else f"every page under {scale.TARGET_MS} ms (median)")
            wrong = [f"{r.name}: {r.status}" for r in results if r.status != r.expected_status]
        if options["json"]:
            text = json.dumps(report, indent=2, default=str)
            if str(options["json"]) == "-":
                self.stdout.write(text)
            else:
                options["json"].write_text(text + "\n")
        if wrong:
            raise CommandError(f"unexpected status: {'; '.join(wrong)}")
