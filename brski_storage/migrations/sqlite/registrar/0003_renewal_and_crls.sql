-- Registrar schema, version 3: same-key renewal and published CRLs.
--
-- Version 1 certified every key at most once (UNIQUE spki_sha256), so an EST
-- /simplereenroll that kept its key (RFC 7030 4.2.2 "renew") was refused.
-- Version 3 keeps the guarantee that matters -- a key is certified afresh
-- exactly once, so a key can never belong to two devices or two first
-- enrolments -- and allows a chain of same-key renewals, each naming the
-- certificate it renews (column renews). Enforced by the database:
--   * certificates_key_once: at most one non-renewal row per key;
--   * certificates_renew_once: a certificate is renewed with its key at most once;
--   * certificates_renewal_same_key: a renewal keeps the key and the device of
--     the certificate it renews.
-- SQLite cannot drop a column constraint, so the table is rebuilt (nothing
-- references it, and this file runs in one transaction).

CREATE TABLE certificates_v2 (
    id                 INTEGER PRIMARY KEY,
    cert_serial        TEXT NOT NULL UNIQUE CHECK (cert_serial <> ''),
    device_serial      TEXT NOT NULL REFERENCES devices (serial),
    spki_sha256        BLOB NOT NULL CHECK (length(spki_sha256) = 32),
    renews             TEXT REFERENCES certificates_v2 (cert_serial),
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

INSERT INTO certificates_v2 (id, cert_serial, device_serial, spki_sha256, renews, state, der,
                             not_before, not_after, reserved_at, issued_at, revoked_at,
                             revocation_reason)
SELECT id, cert_serial, device_serial, spki_sha256, NULL, state, der, not_before, not_after,
       reserved_at, issued_at, revoked_at, revocation_reason
FROM certificates;

DROP TABLE certificates;

ALTER TABLE certificates_v2 RENAME TO certificates;

CREATE INDEX certificates_by_device ON certificates (device_serial, id);

CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE state = 'revoked';

CREATE INDEX certificates_by_spki ON certificates (spki_sha256, id);

CREATE UNIQUE INDEX certificates_key_once ON certificates (spki_sha256) WHERE renews IS NULL;

CREATE UNIQUE INDEX certificates_renew_once ON certificates (renews) WHERE renews IS NOT NULL;

CREATE TRIGGER certificates_renewal_same_key
BEFORE INSERT ON certificates
WHEN NEW.renews IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM certificates
    WHERE cert_serial = NEW.renews AND spki_sha256 = NEW.spki_sha256
      AND device_serial = NEW.device_serial
)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: a renewal keeps the key and device');
END;

-- Every CRL the domain CA published (RFC 5280 5.2.3: CRL numbers increase
-- monotonically); the newest is served at the CRL distribution point.
CREATE TABLE crls (
    number         INTEGER PRIMARY KEY CHECK (number > 0),
    this_update    TEXT NOT NULL,
    next_update    TEXT NOT NULL,
    revoked_count  INTEGER NOT NULL CHECK (revoked_count >= 0),
    der            BLOB NOT NULL
) STRICT;
