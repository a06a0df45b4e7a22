-- How many tasks the account has deleted. Every request reads it with the
-- session (one statement), and an instance answers a finished task's poll
-- from memory only while the count is the one it remembered the task
-- under: a deletion on any instance bumps it in the deleting transaction,
-- so no instance answers for a deleted task afterwards.
ALTER TABLE users ADD COLUMN task_deletions BIGINT NOT NULL DEFAULT 0;
