-- Registrar admission policy, version 2, PostgreSQL dialect (see the SQLite
-- file of the same number for the rationale).

CREATE TABLE device_approvals (
    serial        TEXT COLLATE "C" PRIMARY KEY CHECK (serial <> ''),
    decision      TEXT COLLATE "C" NOT NULL CHECK (decision IN ('pending', 'approved', 'rejected')),
    requested_at  TEXT COLLATE "C",
    decided_at    TEXT COLLATE "C",
    decided_by    TEXT COLLATE "C",
    reason        TEXT COLLATE "C"
);

CREATE INDEX device_approvals_by_decision ON device_approvals (decision, serial);

CREATE TABLE pinned_manufacturers (
    issuer        TEXT COLLATE "C" PRIMARY KEY CHECK (issuer <> ''),
    cert_der      BYTEA NOT NULL,
    spki_sha256   BYTEA NOT NULL CHECK (octet_length(spki_sha256) = 32),
    policy_name   TEXT COLLATE "C" NOT NULL,
    first_serial  TEXT COLLATE "C" NOT NULL,
    pinned_at     TEXT COLLATE "C" NOT NULL
);
