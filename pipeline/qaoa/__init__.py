"""The quantum engine: circuit shapes, templates, the fast simulator and the lockstep optimiser."""
