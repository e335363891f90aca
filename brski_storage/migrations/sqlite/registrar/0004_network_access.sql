-- Registrar schema, version 4: network access (IEEE 802.1X with the LDevID).
--
-- network_sessions: who is on the network now, as the RADIUS server told the
-- registrar (post-auth on Access-Accept, RFC 2866 accounting Start/Stop). One
-- open row per (authenticator, MAC): a new authentication on the same port
-- closes the previous row. The registrar sends an RFC 5176 Disconnect-Request
-- to `das_address` when the device's access decision turns into a refusal.
CREATE TABLE network_sessions (
    id             INTEGER PRIMARY KEY,
    device_serial  TEXT NOT NULL REFERENCES devices (serial),
    cert_serial    TEXT NOT NULL CHECK (cert_serial <> ''),
    authenticator  TEXT NOT NULL CHECK (authenticator <> ''),
    das_address    TEXT,
    port           TEXT,
    mac            TEXT NOT NULL CHECK (mac <> ''),
    session_id     TEXT,
    since          TEXT NOT NULL,
    ended_at       TEXT,
    end_reason     TEXT,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
) STRICT;

CREATE UNIQUE INDEX network_sessions_open ON network_sessions (authenticator, mac) WHERE ended_at IS NULL;
CREATE INDEX network_sessions_by_device ON network_sessions (device_serial, ended_at);

-- The device class the access policy and the MUD profile are chosen by
-- (RFC 8520: the MUD URL names the device type), and where it came from.
CREATE TABLE device_network_profiles (
    serial        TEXT PRIMARY KEY NOT NULL REFERENCES devices (serial),
    device_class  TEXT NOT NULL CHECK (device_class <> ''),
    mud_url       TEXT,
    source        TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
