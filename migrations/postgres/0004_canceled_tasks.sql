-- A person may cancel a generation: the task ends 'canceled' (refunded).
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('submitting', 'processing', 'completed', 'failed', 'canceled'));
ALTER TABLE tasks ADD CONSTRAINT tasks_canceled_finished CHECK (status <> 'canceled' OR finished_at IS NOT NULL);
-- Provider webhooks name the prediction.
CREATE INDEX tasks_by_prediction ON tasks (prediction_id);
-- The owner asked to cancel (written before the provider is asked, so a
-- poll that then sees the prediction canceled knows it was the owner).
ALTER TABLE tasks ADD COLUMN cancel_requested_at BIGINT;
-- Until when a poller holds the download lease (a provider event must not
-- take a task over while its output is being stored).
ALTER TABLE tasks ADD COLUMN leased_until BIGINT;
