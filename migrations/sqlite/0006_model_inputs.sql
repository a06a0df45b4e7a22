-- Per-model inputs: what a generation asked for beyond its prompt, and
-- what it made. A task stores one object per image: `images/{id}` for the
-- first (as before), `images/{id}.{n}` for the others.

-- The aspect ratio asked for (the model's default when none was); none for
-- a model that takes no aspect ratio.
ALTER TABLE tasks ADD COLUMN aspect_ratio TEXT;
-- Images asked for; the cost is the model's credits per image times this.
ALTER TABLE tasks ADD COLUMN num_outputs INTEGER NOT NULL DEFAULT 1 CHECK (num_outputs BETWEEN 1 AND 4);
-- The seed asked for, or the one the provider reported (flux logs
-- `Using seed: N`); unknown otherwise.
ALTER TABLE tasks ADD COLUMN seed INTEGER CHECK (seed BETWEEN 0 AND 4294967295);
ALTER TABLE tasks ADD COLUMN negative_prompt TEXT;
-- The content types of the stored images, in order, comma separated (set
-- with the completion; `content_type` keeps the first's).
ALTER TABLE tasks ADD COLUMN output_types TEXT;
