"""The PostgreSQL backend: psycopg 3, prepared statements, pipelined group commits."""

from persistence.postgres._backend import (
    IDLE_IN_TRANSACTION_MS,
    PostgresBackend,
    connection_settings,
)

__all__ = [
    "IDLE_IN_TRANSACTION_MS",
    "PostgresBackend",
    "connection_settings",
]
