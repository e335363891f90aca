-- Registrar schema, version 3, PostgreSQL dialect: same-key renewal and
-- published CRLs (see the SQLite file of the same number for the rules).
-- PostgreSQL alters the table in place where SQLite had to rebuild it.

ALTER TABLE certificates DROP CONSTRAINT certificates_spki_unique;

ALTER TABLE certificates
    ADD COLUMN renews TEXT COLLATE "C" REFERENCES certificates (cert_serial);

CREATE INDEX certificates_by_spki ON certificates (spki_sha256, id);

CREATE UNIQUE INDEX certificates_key_once ON certificates (spki_sha256) WHERE renews IS NULL;

CREATE UNIQUE INDEX certificates_renew_once ON certificates (renews) WHERE renews IS NOT NULL;

-- A renewal keeps the key and the device of the certificate it renews.
-- Raised as unique_violation so callers see the same Conflict as on SQLite.
CREATE FUNCTION certificates_renewal_same_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.renews IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM certificates
        WHERE cert_serial = NEW.renews AND spki_sha256 = NEW.spki_sha256
          AND device_serial = NEW.device_serial
    ) THEN
        RAISE EXCEPTION 'a renewal keeps the key and device' USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER certificates_renewal_same_key
BEFORE INSERT ON certificates
FOR EACH ROW EXECUTE FUNCTION certificates_renewal_same_key();

CREATE TABLE crls (
    number         BIGINT PRIMARY KEY CHECK (number > 0),
    this_update    TEXT COLLATE "C" NOT NULL,
    next_update    TEXT COLLATE "C" NOT NULL,
    revoked_count  INTEGER NOT NULL CHECK (revoked_count >= 0),
    der            BYTEA NOT NULL
);
