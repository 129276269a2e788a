-- Who looked at what (人过留痕): every replay, query and export. Append-only: the API has no way to
-- change it, and the database refuses UPDATE and DELETE on it (retention drops whole chunks).

CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY,
    at           timestamptz NOT NULL DEFAULT now(),
    user_id      integer,                 -- NULL: the configured API token
    user_name    text NOT NULL,
    role         text NOT NULL,
    org_unit_id  integer,                 -- the caller's unit, for scoping who may read the entry
    action       text NOT NULL,           -- replay.track, replay.trips, query.visited, export.gpx ...
    target       jsonb NOT NULL DEFAULT '{}',  -- the device, time range, shape ... asked for
    outcome      text NOT NULL,           -- ok, not_found, forbidden, bad_request
    client       text NOT NULL DEFAULT '',
    PRIMARY KEY (id, at)
);
SELECT create_hypertable('audit_log', 'at', chunk_time_interval => interval '30 days');
CREATE INDEX audit_log_user ON audit_log (user_name, at DESC);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
