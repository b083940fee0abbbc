-- Operators' own personal data sealed too (issue 12, point 7): the operator directory keeps his management
-- information (name, department, sex, phone, extension, e-mail, info, extra) as one sealed column, under the key
-- of his registration (profile_subject: the subject the event log seals OperatorRegistered v3 and
-- OperatorProfileUpdated v2 under, '<stream id>#r<n>'), or, for operators registered before (profile_subject
-- NULL), under a key derived from the master key. Revoking him clears it and destroys the key. The substring
-- filters of the operator screens run on the opened rows. The directory is dropped and rebuilt from the event log
-- at start (its checkpoint is deleted); its 業務内ID table is rebuilt with it.

DROP TABLE rm_operators;
CREATE TABLE rm_operators (
    operator_key     TEXT   PRIMARY KEY,
    municipality     TEXT   NOT NULL, -- '' for the system administrator
    operator_id      TEXT   NOT NULL,
    profile_subject  TEXT,            -- the data key's subject; NULL: the derived legacy key, or erased
    profile          BLOB,           -- sealed JSON of his management information; NULL once erased
    roles            TEXT   NOT NULL, -- space-separated
    business_systems TEXT   NOT NULL, -- space-separated business ids
    revoked          BIGINT NOT NULL, -- 0/1
    locked           BIGINT NOT NULL, -- 0/1
    locked_until     BIGINT,          -- Unix seconds; NULL while locked = until an administrator unlocks
    version          BIGINT NOT NULL,
    registered_at    TEXT   NOT NULL,
    updated_at       TEXT   NOT NULL,
    CONSTRAINT rm_operators_login_key UNIQUE (municipality, operator_id)
);
DELETE FROM rm_operator_internal_ids;
DELETE FROM projection_checkpoints WHERE name = 'operators';
