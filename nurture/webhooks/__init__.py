"""Inbound provider webhooks: one module per provider (see `sendgrid`)."""
