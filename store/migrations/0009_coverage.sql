-- Coverage per shift (alert rules of kind `coverage`): the share of a zone's H3 cells that a device visited
-- at working speed, one row per rule, device, zone and shift; and the shifts of each rule already computed.

CREATE TABLE shift_coverage (
    rule_id        integer NOT NULL REFERENCES alert_rules (id) ON DELETE RESTRICT,
    device_id      integer NOT NULL,      -- no foreign keys to devices and zones: the record outlives them
    zone_id        integer NOT NULL,
    shift_start    timestamptz NOT NULL,
    shift_end      timestamptz NOT NULL CHECK (shift_end > shift_start),
    cells_total    integer NOT NULL CHECK (cells_total > 0),
    cells_visited  integer NOT NULL CHECK (cells_visited BETWEEN 0 AND cells_total),
    share          double precision NOT NULL CHECK (share BETWEEN 0 AND 1),
    computed_at    timestamptz NOT NULL DEFAULT now(),
    alert_id       bigint,                -- the alert raised when the share was under the rule's minimum
    PRIMARY KEY (rule_id, device_id, zone_id, shift_start)
);
CREATE INDEX shift_coverage_device ON shift_coverage (device_id, shift_start DESC);
CREATE INDEX shift_coverage_zone ON shift_coverage (zone_id, shift_start DESC);
CREATE INDEX shift_coverage_time ON shift_coverage (shift_start DESC);

-- A shift of a rule is computed once (results may be none: no zone, nobody assigned or working there).
CREATE TABLE coverage_shifts (
    rule_id      integer NOT NULL REFERENCES alert_rules (id) ON DELETE RESTRICT,
    shift_start  timestamptz NOT NULL,
    shift_end    timestamptz NOT NULL,
    results      integer NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, shift_start)
);

-- Street sweeping: every sanitation vehicle on the routes it works, 05:00-09:00 Beijing time. It acts only
-- where `sanitation_route` zones exist; edit the shifts and thresholds, or disable it, through the API.
INSERT INTO alert_rules (name, kind, params, device_kinds, severity) VALUES (
    '清扫作业覆盖率 sweeping coverage of the route per shift', 'coverage',
    '{"zone_kind": "sanitation_route", "shifts": [["05:00", "09:00"]], "utc_offset_h": 8, "min_speed_kmh": 0,
      "max_speed_kmh": 15, "resolution": 11, "min_share": 0.9, "grace_s": 300}',
    '{sanitation}', 2);
-- Patrols of the duty grids, disabled: the shifts and the share a patrol can reach on a grid's streets are
-- each city's own. Coarser cells (resolution 10, about 66 m edges) suit areas better than routes.
INSERT INTO alert_rules (name, kind, params, device_kinds, severity, enabled) VALUES (
    '巡查覆盖率 patrol coverage of the duty grid per shift', 'coverage',
    '{"zone_kind": "duty_grid", "shifts": [["08:00", "12:00"], ["14:00", "18:00"]], "utc_offset_h": 8,
      "max_speed_kmh": null, "resolution": 10, "min_share": 0.5, "grace_s": 300}',
    '{enforcement,inspector}', 2, false);
