"""Prefect flows, tasks and the interval schedule; Dask client wiring.

Import :mod:`flows.prefect_env` and call ``configure_prefect`` before importing anything
that imports Prefect, so its home and quiet settings apply.
"""
