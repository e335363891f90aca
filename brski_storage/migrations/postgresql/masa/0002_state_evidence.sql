-- State evidence (brski_storage/evidence.py), PostgreSQL dialect of the SQLite
-- migration of the same number (the reference; keep the two in step). The
-- snapshot's keys sort bytewise (COLLATE "C") so its digest is the same on
-- both engines; hex() is SQLite's built-in, spelled here for bytea.

CREATE OR REPLACE FUNCTION hex(bytea) RETURNS text
    LANGUAGE SQL IMMUTABLE STRICT AS $$ SELECT upper(encode($1, 'hex')) $$;

CREATE TABLE state_evidence (
    kind     TEXT COLLATE "C" NOT NULL,
    row_key  TEXT COLLATE "C" NOT NULL,
    facts    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, row_key)
);

CREATE INDEX events_by_kind ON events (kind, id);
