-- kiln schema v18 (sqlite): whether a build's commit was its branch's head when the build read its pipeline
-- (only such builds of the default branch are quarantine evidence).
ALTER TABLE builds ADD COLUMN at_branch_head INTEGER NOT NULL DEFAULT 0;
