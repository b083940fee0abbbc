-- Projections read only their own aggregates' events (store `read_types`): one index range per stream type, in
-- global order, instead of walking (or scanning) the whole log for a few rare events.
CREATE INDEX events_by_stream_type ON events (stream_type, transaction_id, global_position);
