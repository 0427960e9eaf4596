"""Flows: what the datapath judged, with the policies that decided it.

- `record`: one flow record (the JSON line of `enforcer flows --output json`), read and written;
- the rest of the package (attribution, aggregation, filters, output) builds on it.
"""
