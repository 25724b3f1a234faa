"""Prefect deployment entry points (paths named in prefect.yaml); the flows are `nurture.flows`."""
