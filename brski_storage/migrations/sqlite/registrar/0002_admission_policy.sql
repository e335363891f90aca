-- Registrar admission policy (issue 4), version 2.
-- The manual approval queue (RFC 8995 5.6: "202 ... until an operator
-- decides") and first-use manufacturer pins live in the store, not in the
-- config file, so that `brski registrar devices approve|reject` changes what
-- a running registrar decides without a restart.

-- One row per device serial the queue has seen or an operator pre-decided.
-- No foreign key to devices: an operator may approve or reject a serial
-- before the device first shows up.
CREATE TABLE device_approvals (
    serial        TEXT PRIMARY KEY NOT NULL CHECK (serial <> ''),
    decision      TEXT NOT NULL CHECK (decision IN ('pending', 'approved', 'rejected')),
    requested_at  TEXT,
    decided_at    TEXT,
    decided_by    TEXT,
    reason        TEXT
) STRICT;

CREATE INDEX device_approvals_by_decision ON device_approvals (decision, serial);

-- Trust on first use: the issuer certificate of an IDevID from a
-- manufacturer no anchor covers, pinned the first time it is seen; later
-- IDevIDs naming the same issuer must verify against exactly this certificate.
CREATE TABLE pinned_manufacturers (
    issuer        TEXT PRIMARY KEY NOT NULL CHECK (issuer <> ''),
    cert_der      BLOB NOT NULL,
    spki_sha256   BLOB NOT NULL CHECK (length(spki_sha256) = 32),
    policy_name   TEXT NOT NULL,
    first_serial  TEXT NOT NULL,
    pinned_at     TEXT NOT NULL
) STRICT;
