-- A person's running generations are counted on every generate (the cap
-- on generations at once): this index holds only unfinished tasks.
CREATE INDEX tasks_active_by_user ON tasks (user_id) WHERE status IN ('submitting', 'processing');
