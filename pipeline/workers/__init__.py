"""What a Dask worker runs, one module per task role: a quantum chunk in lockstep
(``quantum``), a chunk of classical problems (``classical``), stored answers run again at
their stored angles for replay and drift (``rerun``). Each takes a task record from
:mod:`pipeline.tasks` and gives back a :class:`~pipeline.tasks.ChunkResult`; the engines
they drive (:mod:`pipeline.qaoa`, :mod:`pipeline.classical`) know nothing of tasks."""
