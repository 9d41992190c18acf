"""Canary runs: a seeded share of each run's quantum batches sampled again on a candidate
backend beside the run, and the verdict on whether the candidate agrees with the main one.

Light on purpose (the settings import its vocabulary): the run's hook is
:mod:`flows.canary`, the worker's task :mod:`pipeline.workers.canary`, the verdict
:mod:`pipeline.canary.verdict`.
"""
