-- The event store (PostgreSQL). Owned by the `store` crate; never edit once applied, add a new migration.
--
-- Global order is (transaction_id, global_position): a reader takes only rows whose transaction is older than
-- the oldest transaction still running (pg_snapshot_xmin), so an event that commits late is delayed, never
-- skipped (../shared/RECIPES.md "Event store ordering").

CREATE TABLE events (
    global_position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  XID8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        UUID        NOT NULL,
    stream_id       TEXT        NOT NULL,
    stream_type     TEXT        NOT NULL,
    version         BIGINT      NOT NULL CHECK (version > 0),
    municipality    TEXT,
    operator_id     UUID,
    event_type      TEXT        NOT NULL,
    event_version   INTEGER     NOT NULL,
    payload         JSONB       NOT NULL,
    metadata        JSONB       NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE INDEX events_global_order ON events (transaction_id, global_position);
CREATE INDEX events_by_municipality ON events (municipality, transaction_id, global_position)
    WHERE municipality IS NOT NULL;
CREATE INDEX events_by_operator ON events (operator_id, transaction_id, global_position)
    WHERE operator_id IS NOT NULL;

-- One row per applied command that carried a command id: a retry returns this outcome and writes nothing.
CREATE TABLE commands (
    command_id     UUID        PRIMARY KEY,
    stream_id      TEXT        NOT NULL,
    last_version   BIGINT      NOT NULL,
    transaction_id BIGINT      NOT NULL,
    last_position  BIGINT      NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
