-- Every provider check rewrites a task's scheduling columns (next_check_at,
-- check_token, leased_until, last_polled_at, progress). With next_check_at
-- in an index, each of those updates wrote a new entry into every index on
-- tasks, and the indexes bloated while tasks were polled. With none of them
-- indexed and room left in each page, PostgreSQL updates the row in place
-- (a heap-only tuple update): no index writes, less WAL. The reconciler's
-- scan of unfinished tasks filters next_check_at in the rows it reads.
DROP INDEX tasks_unfinished;
CREATE INDEX tasks_unfinished ON tasks (deadline_at) WHERE status IN ('submitting', 'processing');
ALTER TABLE tasks SET (fillfactor = 80);
