-- A processing task's place in the provider's own queue (fal reports one:
-- 0 is next), while it waits there; NULL once it runs, or when the
-- provider does not say.
ALTER TABLE tasks ADD COLUMN provider_queue BIGINT;
