-- The live state of every device, saved by the server every so often, so that a restart loads
-- one row per device instead of searching the positions hypertable for each device's newest fix.
-- A cache: positions stays the record, and what was committed after the last save is caught up
-- from positions by receive time. No foreign key (like positions): devices are never deleted.

CREATE TABLE device_latest (
    device_id  integer PRIMARY KEY,
    fix_time   timestamptz,         -- the newest fix by fix time; NULL with lat ... course: none yet
    lat        double precision,
    lon        double precision,
    speed_kmh  real,
    course     real,
    last_seen  timestamptz,         -- the last report or heartbeat received
    saved_at   timestamptz NOT NULL DEFAULT now()
);
