-- Registrar schema, version 1.
-- Timestamps: ISO 8601 UTC text with microseconds and "+00:00" (fixed width,
-- so text order is time order). Hashes, nonces and DER: BLOB. STRICT tables
-- so a wrong type is an error rather than a silent coercion.

CREATE TABLE devices (
    serial              TEXT PRIMARY KEY NOT NULL CHECK (serial <> ''),
    idevid_issuer       TEXT NOT NULL,
    idevid_fingerprint  TEXT NOT NULL,
    manufacturer        TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state <> ''),
    first_seen          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
) STRICT;

CREATE INDEX devices_by_state ON devices (state, serial);
CREATE INDEX devices_by_manufacturer ON devices (manufacturer, serial);

CREATE TABLE device_transitions (
    id          INTEGER PRIMARY KEY,
    serial      TEXT NOT NULL REFERENCES devices (serial),
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    at          TEXT NOT NULL,
    reason      TEXT NOT NULL
) STRICT;

CREATE INDEX device_transitions_by_serial ON device_transitions (serial, id);

CREATE TABLE voucher_requests (
    id                 INTEGER PRIMARY KEY,
    serial             TEXT NOT NULL REFERENCES devices (serial),
    nonce              BLOB,
    pledge_request     BLOB NOT NULL,
    registrar_request  BLOB,
    media_type         TEXT NOT NULL,
    received_at        TEXT NOT NULL
) STRICT;

CREATE INDEX voucher_requests_by_serial ON voucher_requests (serial, id);

CREATE TABLE vouchers (
    id           INTEGER PRIMARY KEY,
    serial       TEXT NOT NULL REFERENCES devices (serial),
    voucher      BLOB NOT NULL,
    media_type   TEXT NOT NULL,
    assertion    TEXT NOT NULL,
    nonce        BLOB,
    expires_on   TEXT,
    received_at  TEXT NOT NULL
) STRICT;

CREATE INDEX vouchers_by_serial ON vouchers (serial, id);

CREATE TABLE status_reports (
    id           INTEGER PRIMARY KEY,
    serial       TEXT NOT NULL REFERENCES devices (serial),
    kind         TEXT NOT NULL CHECK (kind IN ('voucher', 'enroll')),
    status       INTEGER NOT NULL CHECK (status IN (0, 1)),
    reason       TEXT,
    body         TEXT NOT NULL,
    received_at  TEXT NOT NULL
) STRICT;

CREATE INDEX status_reports_by_serial ON status_reports (serial, id);

-- One row per LDevID serial, written BEFORE signing (state 'reserved') so a
-- crash can never lose track of a serial or a key we may have certified.
CREATE TABLE certificates (
    id                 INTEGER PRIMARY KEY,
    cert_serial        TEXT NOT NULL UNIQUE CHECK (cert_serial <> ''),
    device_serial      TEXT NOT NULL REFERENCES devices (serial),
    spki_sha256        BLOB NOT NULL UNIQUE CHECK (length(spki_sha256) = 32),
    state              TEXT NOT NULL CHECK (state IN ('reserved', 'issued', 'revoked')),
    der                BLOB,
    not_before         TEXT,
    not_after          TEXT,
    reserved_at        TEXT NOT NULL,
    issued_at          TEXT,
    revoked_at         TEXT,
    revocation_reason  TEXT,
    CHECK (state = 'reserved' OR (der IS NOT NULL AND not_before IS NOT NULL
                                  AND not_after IS NOT NULL AND issued_at IS NOT NULL)),
    CHECK ((state = 'revoked') = (revoked_at IS NOT NULL))
) STRICT;

CREATE INDEX certificates_by_device ON certificates (device_serial, id);
CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE state = 'revoked';

CREATE TABLE audit_logs (
    id          INTEGER PRIMARY KEY,
    serial      TEXT NOT NULL REFERENCES devices (serial),
    fetched_at  TEXT NOT NULL,
    body        BLOB NOT NULL
) STRICT;

CREATE INDEX audit_logs_by_serial ON audit_logs (serial, id);

-- Hash-chained, append-only. AUTOINCREMENT (not plain rowid) so ids are
-- never reused: sqlite_sequence then records the highest id ever issued,
-- which lets verification notice rows cut from the end of the chain.
-- device_serial has no foreign key: refusals concern devices never stored.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             TEXT NOT NULL,
    kind           TEXT NOT NULL,
    device_serial  TEXT,
    outcome        TEXT NOT NULL CHECK (outcome IN ('allow', 'refuse', 'info')),
    check_name     TEXT,
    detail         TEXT NOT NULL,
    prev_hash      BLOB NOT NULL,
    hash           BLOB NOT NULL UNIQUE
) STRICT;

CREATE INDEX events_by_device ON events (device_serial, id);
