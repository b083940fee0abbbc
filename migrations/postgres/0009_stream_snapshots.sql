-- The folded state of a stream at a version (store `snapshot` / `save_snapshot`), so that a decision over a long
-- stream (an operator's login record) reads only the events after it. A cache: derived from the events, rebuilt
-- by folding them when missing or of another shape (`kind`), and never holding personal data.
CREATE TABLE stream_snapshots (
    stream_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    state TEXT NOT NULL
);
