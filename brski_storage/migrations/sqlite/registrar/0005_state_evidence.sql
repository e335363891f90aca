-- State evidence (see brski_storage/evidence.py): the event chain vouches
-- for the state-bearing tables, not only for itself.
--
-- state_evidence is the checkpoint snapshot: the facts the log implies for
-- every evidenced row, folded from 'state.recorded' events up to the last
-- 'state.checkpoint' event, whose detail holds this table's SHA-256 digest
-- (rows in (kind, row_key) byte order; PostgreSQL: COLLATE "C"). It is
-- written only when a checkpoint is taken, never by ordinary writes.
CREATE TABLE state_evidence (
    kind     TEXT NOT NULL,
    row_key  TEXT NOT NULL,
    facts    TEXT NOT NULL,
    PRIMARY KEY (kind, row_key)
) STRICT, WITHOUT ROWID;

-- The last checkpoint and the state events after it are found by kind.
CREATE INDEX events_by_kind ON events (kind, id);
