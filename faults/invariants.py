"""What must hold after every fault drill, read from the drill's database and the answers its clients recorded.

Each function returns the list of violations (empty when the invariant holds), so a drill reports all of them.
"""

from collections import Counter
from decimal import Decimal

import psycopg

from faults.harness import DATABASE, PG_PORT, Answer


def connect() -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname=DATABASE, autocommit=True)


def no_500(answers: list[Answer]) -> list[str]:
    failed = [a for a in answers if a.status == 500]
    codes = Counter(a.code for a in failed)
    return [f"{len(failed)} answer(s) 500 ({dict(codes)}), e.g. {failed[0].request_id}"] if failed else []


def charged_exactly_the_200s(answers: list[Answer], org_ids: list[int]) -> list[str]:
    """Every 200 has a succeeded line item; no other answer, and no request left unanswered, was charged."""
    with connect() as conn:
        rows = conn.execute(
            "SELECT request_id, status, cost FROM billing_usagelineitem WHERE organization_id = ANY(%s)", (org_ids,)
        ).fetchall()
    items = {request_id: (status, cost) for request_id, status, cost in rows}
    ok = {a.request_id for a in answers if a.status == 200}
    problems = [f"200 {rid} has line item {items.get(rid)}" for rid in ok if items.get(rid, ("",))[0] != "succeeded"]
    for a in answers:
        if a.status not in (200, None) and a.request_id in items:
            status, cost = items[a.request_id]
            if status == "succeeded" or cost != 0:
                problems.append(f"{a.status} {a.code} {a.request_id} was charged: {status} {cost}")
    for rid, (status, cost) in items.items():
        if (status == "succeeded" or cost != 0) and rid not in ok:
            problems.append(f"{rid} is charged ({status} {cost}) but its client got no 200")
    return problems


def counters_match_line_items(org_ids: list[int]) -> list[str]:
    """Each organization-wide daily cap's counter has spent exactly its day's succeeded line items."""
    with connect() as conn:
        rows = conn.execute(
            """
            SELECT c.id, l.organization_id, c.period_start, c.spent,
                   (SELECT COALESCE(SUM(i.cost), 0) FROM billing_usagelineitem i
                     WHERE i.organization_id = l.organization_id AND i.status = 'succeeded'
                       AND (i.created_at AT TIME ZONE 'UTC')::date = c.period_start)
              FROM billing_spendcounter c JOIN billing_spendlimit l ON l.id = c.spend_limit_id
             WHERE l.organization_id = ANY(%s) AND l.api_key_id IS NULL AND l.project_id IS NULL
               AND l.end_user IS NULL AND l.period = 'day'
            """,
            (org_ids,),
        ).fetchall()
    return [
        f"counter {cid} of org {org} on {day}: spent {Decimal(spent)} but line items sum to {Decimal(total)}"
        for cid, org, day, spent, total in rows
        if Decimal(spent) != Decimal(total)
    ]


def nothing_held(org_ids: list[int]) -> list[str]:
    """No reservation, reserved amount or pending line item is left (run after the sweep)."""
    with connect() as conn:
        pending = conn.execute(
            "SELECT count(*) FROM billing_usagelineitem WHERE organization_id = ANY(%s) AND status = 'pending'",
            (org_ids,),
        ).fetchone()[0]
        reservations = conn.execute(
            "SELECT count(*) FROM billing_spendreservation r JOIN billing_usagelineitem i ON i.id = r.line_item_id"
            " WHERE i.organization_id = ANY(%s)",
            (org_ids,),
        ).fetchone()[0]
        reserved = conn.execute(
            "SELECT COALESCE(SUM(c.reserved), 0) FROM billing_spendcounter c"
            " JOIN billing_spendlimit l ON l.id = c.spend_limit_id WHERE l.organization_id = ANY(%s)",
            (org_ids,),
        ).fetchone()[0]
    problems = [f"{pending} pending line item(s)"] if pending else []
    problems += [f"{reservations} reservation(s)"] if reservations else []
    return problems + ([f"counters still hold {reserved} reserved"] if reserved else [])


def all_invariants(answers: list[Answer], org_ids: list[int]) -> list[str]:
    """The four invariants, each violation list cut to its first few; call after the sweep."""
    problems = []
    for found in (
        no_500(answers),
        charged_exactly_the_200s(answers, org_ids),
        counters_match_line_items(org_ids),
        nothing_held(org_ids),
    ):
        problems += found[:SHOWN] + ([f"... and {len(found) - SHOWN} more"] if len(found) > SHOWN else [])
    return problems


SHOWN = 5


def tally(answers: list[Answer]) -> str:
    """`200×41, 503×12, lost×1`: what a drill's clients got, for the log and failure messages."""
    counts = Counter("lost" if a.status is None else str(a.status) for a in answers)
    return ", ".join(f"{status}×{count}" for status, count in sorted(counts.items()))
