"""A run's explicit dependencies, and the clock that times its stages.

Tests and entry points build their own :class:`RunDeps`; :func:`open_deps` builds the
embedded defaults' from settings (SQLite under the home, our LocalCluster or in-process
compute, the content-addressed template store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from flows.compute import ComputeChoice
from flows.progress import ProgressSink, silent
from pipeline.config import Settings
from pipeline.intake import IntakeStore
from pipeline.private import make_folder
from pipeline.results import ResultStore

if TYPE_CHECKING:
    from pipeline.backends import Backend
    from pipeline.qaoa.templates import TemplateStore


def open_intake_to_read(settings: Settings) -> IntakeStore:
    """The intake, for a command that only reads it. A database URL someone configured must
    name an existing database (a typo is an error, never a new empty queue); the home's own
    queue is made on first use, since its home exists (the command checked) and is no typo."""
    return IntakeStore.open(settings.database_url, create=settings.intake.database_url is None)


@dataclass(frozen=True)
class RunDeps:
    """Everything a run touches, made explicit: tests and entry points build their own."""

    settings: Settings
    intake: IntakeStore
    results: ResultStore
    backend_spec: str
    backend: Callable[[], Backend]  # built only once there is work
    compute: ComputeChoice
    templates: Callable[[], TemplateStore]
    progress: ProgressSink = silent


@contextmanager
def open_deps(
    settings: Settings, backend_spec: str | None = None, progress: ProgressSink = silent
) -> Iterator[RunDeps]:
    """The embedded defaults' dependencies for ``settings``; the home is created (owner-only)
    if missing."""
    make_folder(settings.home)
    spec = backend_spec or settings.quantum.backend
    from pipeline.backends.registry import get_backend

    intake = IntakeStore.open(settings.database_url)
    try:
        yield RunDeps(
            settings=settings,
            intake=intake,
            results=ResultStore(settings.results_location, intake.journal),
            backend_spec=spec,
            backend=partial(get_backend, spec, settings.quantum.max_qubits),
            compute=ComputeChoice(
                settings.dask.address,
                settings.dask.n_workers,
                settings.dask.inline_below_s,
                settings.dask.start_timeout_s,
            ),
            templates=partial(_template_store, settings),
            progress=progress,
        )
    finally:
        intake.close()


def _template_store(settings: Settings) -> TemplateStore:
    from pipeline.qaoa.templates import TemplateStore

    return TemplateStore(settings.artifacts_dir)
