"""Reads of usage: one filter and keyset page for every consumer, and the exports, rollups, statements
and overview built on it."""
