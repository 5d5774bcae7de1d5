"""Delivery: getting catalogued clips from the spool into the cloud search library."""
