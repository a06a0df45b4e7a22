-- When a processing task's prediction should end (ms since the epoch), as
-- the provider's own start time and progress said at the last reading
-- that changed the progress; NULL until one did. The poll advice points
-- at it.
ALTER TABLE tasks ADD COLUMN expected_end_at INTEGER;
