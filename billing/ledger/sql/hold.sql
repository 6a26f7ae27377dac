-- imagegate_ledger_hold: hold p_amount for line item p_line_item_id against every cap that applies, or
-- name the first cap without room. Opening a line item inserts it and calls this in the same statement.
--
-- The parts between double braces are billing/ledger/rules.py's, rendered when a migration loads this file.
-- A cap applies by its owner: the organization, the key, the key's project, or the request's end user
-- (p_end_user '': none). This period's counter of every applicable cap (an end-user cap's counter is the
-- end user's: the default cap has one per end user) is created when missing, starting from what was already
-- spent in the period; the counters are then locked in id order (so two requests never deadlock), checked,
-- and, when all have room, each holds p_amount with a reservation row. On a refusal nothing is held and the
-- first cap without room (by counter id) comes back with what the refusal message needs.
CREATE OR REPLACE FUNCTION imagegate_ledger_hold(
    p_line_item_id bigint, p_organization_id bigint, p_api_key_id bigint, p_project_id bigint,
    p_end_user varchar, p_amount numeric, p_now timestamptz, p_day date, p_month date, p_total date,
    p_day_from timestamptz, p_month_from timestamptz, p_total_from timestamptz
) RETURNS TABLE (
    line_item_id bigint, held bigint[], refused_limit bigint, refused_period varchar, refused_start date,
    refused_cap numeric, refused_spent numeric, refused_reserved numeric, refused_organization varchar,
    refused_key varchar, refused_project varchar, refused_end_user varchar
) LANGUAGE plpgsql AS $$
DECLARE
    applicable integer;
    counter record;
    refused_organization_id bigint;
    refused_api_key_id bigint;
    refused_project_id bigint;
BEGIN
    line_item_id := p_line_item_id;
    held := '{}';
    SELECT count(*) INTO applicable FROM billing_spendlimit l WHERE {{caps_applicable}};
    IF applicable = 0 THEN
        RETURN NEXT;
        RETURN;
    END IF;
    FOR attempt IN 1..2 LOOP
        held := '{}';
        refused_limit := NULL;
        FOR counter IN
            SELECT c.id, c.period_start, c.spent, c.reserved, l.id AS limit_id, l.period, l.amount AS cap,
                   l.organization_id, l.api_key_id, l.project_id, l.end_user AS cap_end_user,
                   c.end_user AS counter_end_user
              FROM billing_spendcounter c JOIN billing_spendlimit l ON l.id = c.spend_limit_id
             WHERE {{caps_applicable}} AND c.period_start = {{period_start}}
               AND c.end_user = {{counter_end_user}}
             ORDER BY c.id
               FOR UPDATE OF c
        LOOP
            IF refused_limit IS NULL AND counter.spent + counter.reserved + p_amount > counter.cap THEN
                refused_limit := counter.limit_id;
                refused_period := counter.period;
                refused_start := counter.period_start;
                refused_cap := counter.cap;
                refused_spent := counter.spent;
                refused_reserved := counter.reserved;
                refused_organization_id := counter.organization_id;
                refused_api_key_id := counter.api_key_id;
                refused_project_id := counter.project_id;
                -- A default end-user cap refuses in the name of the end user it counts.
                refused_end_user := CASE WHEN counter.cap_end_user IS NULL THEN NULL ELSE counter.counter_end_user END;
            END IF;
            held := held || counter.id;
        END LOOP;
        EXIT WHEN cardinality(held) >= applicable OR attempt = 2;
        -- A cap without a counter for this period yet: create it from the spend already made in the period.
        -- Two requests creating it at once compute the same figure; the second insert is skipped.
        INSERT INTO billing_spendcounter (spend_limit_id, period_start, end_user, spent, reserved)
        SELECT l.id, {{period_start}}, {{counter_end_user}}, {{spent_so_far}}, 0
          FROM billing_spendlimit l
         WHERE {{caps_applicable}}
           AND NOT EXISTS (SELECT 1 FROM billing_spendcounter c
                            WHERE c.spend_limit_id = l.id AND c.period_start = {{period_start}}
                              AND c.end_user = {{counter_end_user}})
         ORDER BY l.id
        ON CONFLICT (spend_limit_id, period_start, end_user) DO NOTHING;
    END LOOP;
    IF refused_limit IS NOT NULL THEN
        held := '{}';
        SELECT o.slug, k.prefix, pj.name INTO refused_organization, refused_key, refused_project
          FROM accounts_organization o LEFT JOIN accounts_apikey k ON k.id = refused_api_key_id
               LEFT JOIN accounts_project pj ON pj.id = refused_project_id
         WHERE o.id = refused_organization_id;
        RETURN NEXT;
        RETURN;
    END IF;
    UPDATE billing_spendcounter SET reserved = reserved + p_amount WHERE id = ANY (held);
    INSERT INTO billing_spendreservation (line_item_id, counter_id, amount, created_at)
         SELECT p_line_item_id, unnest(held), p_amount, p_now;
    RETURN NEXT;
END
$$;
