-- Projections read only their own aggregates' events (store `read_types`): one index range per stream type.
CREATE INDEX events_by_stream_type ON events (stream_type, global_position);
