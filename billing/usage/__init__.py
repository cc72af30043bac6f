"""Usage records: the ledger that drains the proxy's event streams, the records and rollups it writes,
retention, re-pricing, exports, dead letters, and the read-side queries of usage."""
