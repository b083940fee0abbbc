-- The event store (SQLite). Owned by the `store` crate; never edit once applied, add a new migration.
--
-- SQLite has a single writer, so global_position is assigned and committed in order: the global order is
-- global_position alone (transaction_id is kept at 0 so checkpoints share one shape with PostgreSQL).

CREATE TABLE events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        BLOB    NOT NULL,
    stream_id       TEXT    NOT NULL,
    stream_type     TEXT    NOT NULL,
    version         INTEGER NOT NULL CHECK (version > 0),
    municipality    TEXT,
    operator_id     BLOB,
    event_type      TEXT    NOT NULL,
    event_version   INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE INDEX events_by_municipality ON events (municipality, global_position) WHERE municipality IS NOT NULL;
CREATE INDEX events_by_operator ON events (operator_id, global_position) WHERE operator_id IS NOT NULL;

CREATE TABLE commands (
    command_id     BLOB    PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    last_version   INTEGER NOT NULL,
    transaction_id INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    recorded_at    TEXT    NOT NULL
);
