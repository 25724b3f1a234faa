"""Deployment entry point kept at this path so deployments made from an older prefect.yaml
keep working; the flow lives in `nurture.flows.process_engagement`."""

from nurture.flows.process_engagement import process_engagement

__all__ = ["process_engagement"]
