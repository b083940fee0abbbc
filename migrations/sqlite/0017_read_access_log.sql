-- The read access log (issue 12, point 4): every read of residents' personal data — who, when, from which
-- terminal, through which operation, which residents. One row per read operation, the residents it returned in
-- one compact column (their resident ids, space-separated; registry entries by their keys), so that a search of a
-- hundred residents costs one small INSERT rather than a hundred. No personal data: ids only.
--
-- Append-only, in the order of `seq` (AUTOINCREMENT: never reused; a hash chain can be laid over it later):
-- updates and deletes are refused.
CREATE TABLE read_access_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Unix milliseconds, from the server's clock.
    recorded_at BIGINT NOT NULL,
    municipality TEXT NOT NULL,
    operator_key TEXT NOT NULL,
    terminal TEXT,
    request_id TEXT,
    -- A stable name: resident.read, resident.search, registry.read, registry.lookup.
    operation TEXT NOT NULL,
    -- How many residents and registry entries the read returned (the bulk-read alert adds these up first).
    subject_count BIGINT NOT NULL,
    -- Resident ids (UUIDs), space-separated; empty when none.
    residents TEXT NOT NULL,
    -- Registry keys (宛名番号), space-separated; empty when none.
    registry_keys TEXT NOT NULL
);
CREATE INDEX read_access_log_by_municipality ON read_access_log (municipality, seq);
CREATE INDEX read_access_log_by_operator ON read_access_log (operator_key, recorded_at);

-- Bulk-read alerts: one operator read more distinct residents within an hour than his municipality's threshold.
CREATE TABLE read_access_alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    raised_at BIGINT NOT NULL,
    municipality TEXT NOT NULL,
    operator_key TEXT NOT NULL,
    -- The window looked at: (window_start, raised_at].
    window_start BIGINT NOT NULL,
    distinct_subjects BIGINT NOT NULL,
    threshold BIGINT NOT NULL
);
CREATE INDEX read_access_alerts_by_municipality ON read_access_alerts (municipality, seq);
CREATE INDEX read_access_alerts_by_operator ON read_access_alerts (operator_key, raised_at);

CREATE TRIGGER read_access_log_no_update BEFORE UPDATE ON read_access_log
BEGIN SELECT RAISE(ABORT, 'the read access log is append-only'); END;
CREATE TRIGGER read_access_log_no_delete BEFORE DELETE ON read_access_log
BEGIN SELECT RAISE(ABORT, 'the read access log is append-only'); END;
CREATE TRIGGER read_access_alerts_no_update BEFORE UPDATE ON read_access_alerts
BEGIN SELECT RAISE(ABORT, 'the read access log is append-only'); END;
CREATE TRIGGER read_access_alerts_no_delete BEFORE DELETE ON read_access_alerts
BEGIN SELECT RAISE(ABORT, 'the read access log is append-only'); END;
