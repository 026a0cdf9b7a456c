"""Opening the ledger's database: an engine that serialises writes, and migrations to head.

SQLite (`sqlite:///path`, the default: one coordinator, nothing to install) runs in WAL mode and
begins every transaction with `BEGIN IMMEDIATE`, so two writers never both read a balance and
then write; the second waits (up to `BUSY_TIMEOUT`). PostgreSQL (`postgresql+psycopg://…`, for
several coordinator processes on one database) keeps its default READ COMMITTED and `db.py`
locks the rows it checks (`SELECT … FOR UPDATE`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hearth.public_swarm.ledger.errors import LedgerInputInvalid

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "ledger_alembic_version"
"""The ledger's own Alembic version table, so other parts of the coordinator can keep theirs."""
BUSY_TIMEOUT = 60.0
"""Seconds a SQLite writer waits for another to finish before it gives up."""
_MIGRATE_LOCK = 0x6865617274680001
"""PostgreSQL advisory lock id: two coordinators starting at once migrate one after the other."""


def backend_of(url: str) -> str:
    """'sqlite' or 'postgresql', or LedgerInputInvalid for any other URL."""
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise LedgerInputInvalid(f"Not a database URL: {url!r}", param="db") from exc
    if u.get_backend_name() == "sqlite" and u.get_driver_name() == "pysqlite":
        return "sqlite"
    if u.get_backend_name() == "postgresql" and u.get_driver_name() == "psycopg":
        return "postgresql"
    raise LedgerInputInvalid(
        f"The ledger runs on sqlite:///PATH or postgresql+psycopg://USER@HOST/DB, not {u.drivername!r}.",
        param="db")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for the ledger at `url`, set up so that writes serialise (see the module doc)."""
    if backend_of(url) == "postgresql":
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT, "check_same_thread": False},
                           pool_size=pool_size, max_overflow=pool_size)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's events: pysqlite would otherwise BEGIN DEFERRED.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def migrate(engine: Engine, migrations: Path, version_table: str, lock_id: int) -> None:
    """Bring one Alembic chain (its own folder and version table) to its newest migration:
    idempotent, and safe for concurrent starts (PostgreSQL advisory lock `lock_id`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("version_table", version_table)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def upgrade(engine: Engine) -> None:
    """Bring the ledger's tables to the newest migration."""
    migrate(engine, MIGRATIONS, VERSION_TABLE, _MIGRATE_LOCK)
