-- The session's directory on its home replica: a listing on any replica shows the same `dir`
-- the home would (the reference's tools read it), without the home's files.
ALTER TABLE sessions ADD COLUMN dir text NOT NULL DEFAULT '';
