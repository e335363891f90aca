-- MASA schema, version 1. Same conventions as the registrar's: ISO 8601
-- UTC text timestamps, BLOB for hashes/nonces/DER, STRICT tables.

CREATE TABLE devices (
    serial              TEXT PRIMARY KEY NOT NULL CHECK (serial <> ''),
    idevid_fingerprint  TEXT NOT NULL,
    created_at          TEXT NOT NULL
) STRICT;

-- Domain CAs the MASA pins for a device (its owners, RFC 8995 5.5.4).
CREATE TABLE owners (
    id                     INTEGER PRIMARY KEY,
    serial                 TEXT NOT NULL REFERENCES devices (serial),
    domain_ca_spki_sha256  BLOB NOT NULL CHECK (length(domain_ca_spki_sha256) = 32),
    domain_ca_der          BLOB NOT NULL,
    added_at               TEXT NOT NULL,
    UNIQUE (serial, domain_ca_spki_sha256)
) STRICT;

CREATE TABLE vouchers (
    id                     INTEGER PRIMARY KEY,
    serial                 TEXT NOT NULL REFERENCES devices (serial),
    registrar_spki_sha256  BLOB NOT NULL,
    domain_ca_spki_sha256  BLOB NOT NULL,
    nonce                  BLOB,
    assertion              TEXT NOT NULL,
    voucher                BLOB NOT NULL,
    media_type             TEXT NOT NULL,
    created_at             TEXT NOT NULL,
    expires_on             TEXT
) STRICT;

CREATE INDEX vouchers_by_serial ON vouchers (serial, id);

-- RFC 8995 section 5.8.1 audit log entries, one per voucher issued.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    serial      TEXT NOT NULL REFERENCES devices (serial),
    at          TEXT NOT NULL,
    domain_id   TEXT NOT NULL,
    nonce       BLOB,
    assertion   TEXT NOT NULL,
    truncated   INTEGER NOT NULL DEFAULT 0 CHECK (truncated >= 0)
) STRICT;

CREATE INDEX audit_log_by_serial ON audit_log (serial, domain_id, id);

-- Same hash-chained design as the registrar's events table (see there).
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
