"""Tools for developing nurture itself (the chaos harness); not used by the engine."""
