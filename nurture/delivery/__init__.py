"""Delivery transports behind one small interface; `nurture.wiring` picks one by settings."""
