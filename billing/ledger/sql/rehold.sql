-- imagegate_ledger_rehold: replace line item p_line_item_id's hold with one of p_amount (a fallback model
-- tried at its own price), all or nothing: on a refusal the previous hold stands and the refusing cap comes
-- back as from imagegate_ledger_hold.
CREATE OR REPLACE FUNCTION imagegate_ledger_rehold(
    p_line_item_id bigint, p_organization_id bigint, p_api_key_id bigint, p_project_id bigint,
    p_end_user varchar, p_amount numeric, p_now timestamptz, p_day date, p_month date, p_total date,
    p_day_from timestamptz, p_month_from timestamptz, p_total_from timestamptz
) RETURNS TABLE (
    line_item_id bigint, held bigint[], refused_limit bigint, refused_period varchar, refused_start date,
    refused_cap numeric, refused_spent numeric, refused_reserved numeric, refused_organization varchar,
    refused_key varchar, refused_project varchar, refused_end_user varchar
) LANGUAGE plpgsql AS $$
DECLARE
    outcome record;
BEGIN
    BEGIN
        PERFORM imagegate_ledger_settle(p_line_item_id, 0);
        SELECT * INTO outcome FROM imagegate_ledger_hold(
            p_line_item_id, p_organization_id, p_api_key_id, p_project_id, p_end_user, p_amount, p_now,
            p_day, p_month, p_total, p_day_from, p_month_from, p_total_from);
        IF outcome.refused_limit IS NOT NULL THEN
            -- Undo the release: the block's savepoint rolls back, the refusal is still returned below.
            RAISE EXCEPTION 'no room for the fallback attempt' USING ERRCODE = 'IG402';
        END IF;
    EXCEPTION WHEN SQLSTATE 'IG402' THEN
        NULL;
    END;
    RETURN QUERY SELECT outcome.line_item_id, outcome.held, outcome.refused_limit, outcome.refused_period,
        outcome.refused_start, outcome.refused_cap, outcome.refused_spent, outcome.refused_reserved,
        outcome.refused_organization, outcome.refused_key, outcome.refused_project, outcome.refused_end_user;
END
$$;
