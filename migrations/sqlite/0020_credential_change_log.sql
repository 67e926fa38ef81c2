-- PostgreSQL's 0020 adds the credential change feed several instances on
-- one database need (a log with sequence numbers beside the notifications).
-- A SQLite file serves one instance, whose watcher polls migration 0009's
-- counter on the file itself: nothing to add here. The file keeps both
-- folders listing the same versions.
SELECT 1;
