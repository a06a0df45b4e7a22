-- Provider events already applied, by their `webhook-id`, kept for twice
-- the signature's tolerance: a captured event replayed within the window
-- is dropped, on whichever instance it arrives.
CREATE TABLE webhook_deliveries (
    id          TEXT    PRIMARY KEY,
    -- milliseconds since the Unix epoch
    received_at BIGINT  NOT NULL
);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (received_at);

-- When the provider was last asked about the task (a claimed check), so
-- that events, which defer checks, cannot defer them without end.
ALTER TABLE tasks ADD COLUMN checked_at BIGINT;
