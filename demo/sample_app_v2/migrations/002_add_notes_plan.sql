-- 2.0.0: the plan a note was written under (paid plans). Nullable and unused by 1.0.0's queries,
-- so 1.0.0 keeps working on this schema after a rollback.
ALTER TABLE notes ADD COLUMN plan TEXT;
