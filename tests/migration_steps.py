"""Moving the test database along the migration graph, for tests of data migrations."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader


def loader() -> MigrationLoader:
    return MigrationExecutor(connection).loader


def migration_ending(app: str, suffix: str) -> tuple[str, str]:
    """The key of `app`'s migration whose name ends with `suffix` (numbers may change when branches merge)."""
    return next(key for key in loader().disk_migrations if key[0] == app and key[1].endswith(suffix))


def migrate_to(targets: list[tuple[str, str]]) -> Apps:
    """Migrate to `targets` and return the models as they stand there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def migrate_to_latest() -> Apps:
    return migrate_to(loader().graph.leaf_nodes())
