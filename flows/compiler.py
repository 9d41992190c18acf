"""Templates for a run's batches: each distinct shape compiled (or loaded) once, in dispatch
order, and packed for the workers, on a thread of its own so compiling overlaps the
cluster's start and the first batches' execution.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures import Future as LocalFuture

from batching.batches import Batch, TemplateUse
from pipeline.backends import Backend
from pipeline.qaoa.shapes import ShapeKey
from pipeline.qaoa.templates import PackedTemplate, TemplateLookup, TemplateStore


class TemplateCompiler:
    """Compiles (or loads) each distinct shape's template, in dispatch order, on one thread,
    so compiling overlaps the cluster's start and the first batches' execution.

    The same thread packs each template for the workers: the run's own thread never
    touches a circuit. An in-process run passes its task thread, so every Qiskit object of
    the process is handled by one thread, in order.
    """

    def __init__(self, store: TemplateStore, backend: Backend, thread: Executor | None) -> None:
        self._store = store
        self._backend = backend
        self._own = thread is None
        self._pool = thread or ThreadPoolExecutor(1, thread_name_prefix="qhopper-compile")
        self._lookups: dict[str, LocalFuture[tuple[TemplateLookup, PackedTemplate]]] = {}
        self._taken: set[str] = set()

    def add(self, batches: Sequence[Batch]) -> None:
        """Start compiling the templates ``batches`` need that are not on their way yet."""
        for batch in batches:
            if batch.shape is not None and batch.shape.digest not in self._lookups:
                self._lookups[batch.shape.digest] = self._pool.submit(
                    _compile_and_pack, self._store, batch.shape, self._backend
                )

    def ready(self, batch: Batch) -> bool:
        return batch.shape is None or self._lookups[batch.shape.digest].done()

    def take(self, batch: Batch, timeout_s: float) -> tuple[PackedTemplate, TemplateUse]:
        """The batch's template, packed once per run; the first batch of a shape pays for it."""
        assert batch.shape is not None
        digest = batch.shape.digest
        lookup, packed = self._lookups[digest].result(timeout=timeout_s)
        first = digest not in self._taken
        self._taken.add(digest)
        use = TemplateUse(
            lookup.template.artifact_key,
            first=first,
            compiled=first and not lookup.reused,
            compile_s=lookup.seconds if first else 0.0,
        )
        return packed, use

    def close(self) -> None:
        if self._own:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _compile_and_pack(
    store: TemplateStore, shape: ShapeKey, backend: Backend
) -> tuple[TemplateLookup, PackedTemplate]:
    lookup = store.get(shape, backend)
    return lookup, PackedTemplate.pack(lookup.template)
