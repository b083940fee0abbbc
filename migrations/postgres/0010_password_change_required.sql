-- A password someone else knows (the generated first password of the system administrator) must be changed at
-- the first login: until then his sessions may do nothing else. Set by the `RequirePasswordChange` companion,
-- cleared whenever a new password is stored.
ALTER TABLE credentials ADD COLUMN must_change BIGINT NOT NULL DEFAULT 0;
