"""The spend ledger's reserve and settle steps as PostgreSQL functions (billing/spend_sql.py calls them).

Each runs the same rules as billing.spend, as one statement from the request path:
counters are locked in primary-key order, checked, and held (or settled) in one
transaction. Any case that needs more than that (a counter not yet created this
period, a cap without room) raises a distinct SQLSTATE, rolls the statement back
and leaves the answer to billing.spend, which re-checks under the same locks.
SQLite has no functions: there billing.spend does every step.
"""

from django.db import migrations

RESERVE = """
CREATE OR REPLACE FUNCTION imagegate_spend_reserve(
    p_line_item_id bigint, p_organization_id bigint, p_api_key_id bigint, p_amount numeric,
    p_now timestamptz, p_day date, p_month date, p_total date
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    applicable integer;
    counter record;
    held bigint[] := '{}';
BEGIN
    SELECT count(*) INTO applicable FROM billing_spendlimit l
     WHERE l.organization_id = p_organization_id AND (l.api_key_id IS NULL OR l.api_key_id = p_api_key_id);
    IF applicable = 0 THEN
        RETURN false;
    END IF;
    FOR counter IN
        SELECT c.id, c.spent, c.reserved, l.amount AS cap
          FROM billing_spendcounter c JOIN billing_spendlimit l ON l.id = c.spend_limit_id
         WHERE l.organization_id = p_organization_id AND (l.api_key_id IS NULL OR l.api_key_id = p_api_key_id)
           AND c.period_start = CASE l.period WHEN 'day' THEN p_day WHEN 'month' THEN p_month ELSE p_total END
         ORDER BY c.id
           FOR UPDATE OF c
    LOOP
        IF counter.spent + counter.reserved + p_amount > counter.cap THEN
            RAISE EXCEPTION 'spend counter % has no room', counter.id USING ERRCODE = 'IG402';
        END IF;
        held := held || counter.id;
    END LOOP;
    IF cardinality(held) < applicable THEN
        RAISE EXCEPTION 'a spend counter is missing for this period' USING ERRCODE = 'IG404';
    END IF;
    UPDATE billing_spendcounter SET reserved = reserved + p_amount WHERE id = ANY (held);
    INSERT INTO billing_spendreservation (line_item_id, counter_id, amount, created_at)
         SELECT p_line_item_id, unnest(held), p_amount, p_now;
    RETURN true;
END
$$;
"""

SETTLE = """
CREATE OR REPLACE FUNCTION imagegate_spend_settle(p_line_item_id bigint, p_charged numeric)
RETURNS TABLE (settled_counter bigint, settled_limit bigint, limit_organization bigint, counter_period date,
               limit_amount numeric, spent_now numeric)
LANGUAGE plpgsql AS $$
DECLARE
    reservation record;
BEGIN
    -- By counter id: the same lock order as reserving.
    FOR reservation IN
        WITH taken AS (
            DELETE FROM billing_spendreservation r WHERE r.line_item_id = p_line_item_id
            RETURNING r.counter_id, r.amount
        )
        SELECT taken.counter_id, taken.amount FROM taken ORDER BY taken.counter_id
    LOOP
        IF p_charged > reservation.amount THEN
            RAISE EXCEPTION 'cannot charge % against a reservation of %', p_charged, reservation.amount
                USING ERRCODE = 'IG409';
        END IF;
        UPDATE billing_spendcounter c
           SET reserved = c.reserved - reservation.amount, spent = c.spent + p_charged
         WHERE c.id = reservation.counter_id
        RETURNING c.id, c.spend_limit_id, c.period_start, c.spent
             INTO settled_counter, settled_limit, counter_period, spent_now;
        SELECT l.organization_id, l.amount INTO limit_organization, limit_amount
          FROM billing_spendlimit l WHERE l.id = settled_limit;
        RETURN NEXT;
    END LOOP;
END
$$;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # No parameters: the bodies' RAISE formats use a literal %.
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(RESERVE)
            cursor.execute(SETTLE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS imagegate_spend_reserve")
        schema_editor.execute("DROP FUNCTION IF EXISTS imagegate_spend_settle")


class Migration(migrations.Migration):
    dependencies = [("billing", "0007_fewer_line_item_indexes")]

    operations = [migrations.RunPython(create, drop)]
