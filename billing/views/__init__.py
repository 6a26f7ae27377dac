"""Billing's views, one module per screen family; they translate HTTP and leave reads and writes to
billing.usage, billing.limits and billing.services."""
