-- The emergency button (JT/T 808 alarm bit 0) raises a critical alert on every vehicle.
INSERT INTO alert_rules (name, kind, params, severity)
    VALUES ('紧急报警 SOS (emergency button)', 'alarm', '{"bits": [0], "min_s": 0}', 4);
