-- kiln schema v19 (postgres): a test queue seeded from an earlier build's list while this build lists
-- (the build it was seeded from; NULL: not seeded). Items of a seeded queue that the list does
-- not name are 'dropped': run perhaps, but not part of this build's suite.
ALTER TABLE test_groups ADD COLUMN seeded_from BIGINT;
