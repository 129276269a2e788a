-- A raise is also skipped when the same device, rule, zone and kind already has an alert, going on or
-- ended, late or not, whose span holds the new start: it is the same event seen again. In the
-- distributed mode a processor taking a partition over evaluates again the fixes its predecessor had
-- evaluated but not acknowledged, after replaying the recent stored ones to rebuild its state; what it
-- raises again starts at the same fix time, or later for a condition that began before the replay
-- window, inside the alert already raised. Alerts of one rule, device, zone and kind never overlap, so
-- no new event is lost. The latest alert starting at or before the new start is the one to look at.
CREATE OR REPLACE FUNCTION apply_alert_changes(changes jsonb) RETURNS SETOF alerts
LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    r alerts;
BEGIN
    FOR c IN SELECT value FROM jsonb_array_elements(changes) LOOP
        IF c ? 'started_at' THEN
            INSERT INTO alerts (started_at, device_id, rule_id, zone_id, kind, severity, late, evidence)
            SELECT (c->>'started_at')::timestamptz, (c->>'device_id')::integer, (c->>'rule_id')::integer,
                   (c->>'zone_id')::integer, c->>'kind', (c->>'severity')::smallint, (c->>'late')::boolean,
                   c->'evidence'
            WHERE NOT EXISTS (
                SELECT 1 FROM alerts
                WHERE device_id = (c->>'device_id')::integer AND rule_id = (c->>'rule_id')::integer
                  AND zone_id IS NOT DISTINCT FROM (c->>'zone_id')::integer AND ended_at IS NULL
                  AND late = (c->>'late')::boolean AND kind = c->>'kind'
                UNION ALL
                SELECT 1 FROM (
                    SELECT ended_at FROM alerts
                    WHERE device_id = (c->>'device_id')::integer AND started_at <= (c->>'started_at')::timestamptz
                      AND rule_id = (c->>'rule_id')::integer
                      AND zone_id IS NOT DISTINCT FROM (c->>'zone_id')::integer AND kind = c->>'kind'
                    ORDER BY started_at DESC LIMIT 1) AS latest
                WHERE latest.ended_at IS NULL OR latest.ended_at >= (c->>'started_at')::timestamptz)
            RETURNING * INTO r;
            IF FOUND THEN
                RETURN NEXT r;
            END IF;
        ELSE
            FOR r IN
                UPDATE alerts SET ended_at = (c->>'ended_at')::timestamptz
                WHERE device_id = (c->>'device_id')::integer AND rule_id = (c->>'rule_id')::integer
                  AND zone_id IS NOT DISTINCT FROM (c->>'zone_id')::integer AND ended_at IS NULL
                  AND late = (c->>'late')::boolean AND started_at <= (c->>'ended_at')::timestamptz
                  AND (c->>'kind' IS NULL OR kind = c->>'kind')
                RETURNING *
            LOOP
                RETURN NEXT r;
            END LOOP;
        END IF;
    END LOOP;
END
$$;
