"""Deployment entry point kept at this path so deployments made from an older prefect.yaml
keep working; the flow lives in `nurture.flows.daily_cycle`."""

from nurture.flows.daily_cycle import daily_nurture_cycle

__all__ = ["daily_nurture_cycle"]
