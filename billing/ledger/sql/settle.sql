-- imagegate_ledger_settle: turn line item p_line_item_id's reservations into p_charged of spend (0: release them)
-- and drop them; one row per counter settled (with the end user it counts), for the alerts.
--
-- Counters are taken in id order, the lock order of imagegate_ledger_hold. Charging more than was held is a
-- bug in the caller, never a business case: it raises IG409 and the whole statement rolls back.
CREATE OR REPLACE FUNCTION imagegate_ledger_settle(p_line_item_id bigint, p_charged numeric)
RETURNS TABLE (settled_counter bigint, settled_limit bigint, limit_organization bigint, counter_period date,
               limit_amount numeric, spent_now numeric, counter_end_user varchar)
LANGUAGE plpgsql AS $$
DECLARE
    reservation record;
BEGIN
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
        RETURNING c.id, c.spend_limit_id, c.period_start, c.spent, c.end_user
             INTO settled_counter, settled_limit, counter_period, spent_now, counter_end_user;
        SELECT l.organization_id, l.amount INTO limit_organization, limit_amount
          FROM billing_spendlimit l WHERE l.id = settled_limit;
        RETURN NEXT;
    END LOOP;
END
$$;
