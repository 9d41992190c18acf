"""qhopper as a service other programs call: ``qhopper api`` (FastAPI on uvicorn).

Why a package of its own: the HTTP layer (``app``), who may call (``auth``), what the
service counts (``metrics``), the trace context (``tracing``) and the synchronous solve
that ``/v1/solve`` and ``qhopper solve`` share (``solve``) change for different reasons.
Everything here reaches the run core through :func:`flows.run.run_once`; nothing
sequences a run by itself.
"""

from flows.api.app import create_app

__all__ = ["create_app"]
