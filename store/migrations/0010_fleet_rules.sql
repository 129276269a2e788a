-- The city's standing rules for its vehicles, as data: edit, scope or disable them through the API.
-- Inspectors on foot (device kind 'inspector') are judged by attendance, not by these.

INSERT INTO alert_rules (name, kind, params, device_kinds, severity) VALUES
    ('渣土车超速 muck truck overspeed', 'overspeed', '{"limit_kmh": 60, "min_s": 10}', '{muck}', 3),
    ('超速 overspeed', 'overspeed', '{"limit_kmh": 80, "min_s": 10}', '{sanitation,enforcement}', 2),
    ('超时停车 stopped outside a depot', 'stopped', '{"min_s": 1800, "max_speed_kmh": 3}',
     '{sanitation,muck,enforcement}', 1),
    ('疑似乱倒乱卸 suspected illegal dumping', 'dumping', '{"stop_min_s": 600, "max_speed_kmh": 3}', '{muck}', 4),
    ('作业超速 sweeping too fast', 'working_speed', '{"max_speed_kmh": 15, "min_s": 60}', '{sanitation}', 1),
    ('在岗离线 offline on shift', 'offline', '{"max_s": 1800, "shifts": [["06:00", "22:00"]]}',
     '{sanitation,enforcement}', 2),
    ('渣土车夜间离线 muck truck offline at night', 'offline', '{"max_s": 1800, "shifts": [["22:00", "06:00"]]}',
     '{muck}', 2);

-- Permitted hours differ from city to city: ready, but off until the city sets its own.
INSERT INTO alert_rules (name, kind, params, device_kinds, severity, enabled) VALUES
    ('渣土车非许可时段行驶 muck truck outside permitted hours', 'forbidden_hours',
     '{"allowed": [["22:00", "06:00"]], "min_speed_kmh": 5, "min_s": 60}', '{muck}', 3, false);
