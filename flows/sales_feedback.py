"""Deployment entry point kept at this path so deployments made from an older prefect.yaml
keep working; the flow lives in `nurture.flows.sales_feedback`."""

from nurture.flows.sales_feedback import sales_feedback

__all__ = ["sales_feedback"]
