"""Alembic's entry point for the coordinator's tables: `hearth.public_swarm.coordinator.workers.upgrade`
runs it with an open connection (in `config.attributes["connection"]`); there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from hearth.public_swarm.coordinator.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  version_table=context.config.get_main_option("version_table") or "alembic_version")
with context.begin_transaction():
    context.run_migrations()
