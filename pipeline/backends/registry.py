"""Backend spec strings (``name[:argument]``) to backends, with no import loop.

Each name maps to a ``module:factory`` path imported only when a backend is built, so
the registry imports no backend module and no backend module imports the registry: a
wrapper (``faulty:``) gets its inner backend through the ``resolve`` argument. Factories
take ``(argument, max_qubits, resolve)`` and return a :class:`Backend`.

:func:`check_backend_spec` validates a spec without importing qiskit, so the CLI can
reject a typo in milliseconds, before anything starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.vocabulary import BackendFamily

if TYPE_CHECKING:
    from pipeline.backends.base import Backend

_FACTORIES = {
    BackendFamily.AER: "pipeline.backends.aer:make",
    BackendFamily.AER_NOISY: "pipeline.backends.aer_noisy:make",
    BackendFamily.BRAKET: "pipeline.backends.braket_aws:make",
    BackendFamily.BRAKET_LOCAL: "pipeline.backends.braket:make_local",
    BackendFamily.FAULTY: "pipeline.backends.faulty:make",
    BackendFamily.IBM: "pipeline.backends.ibm:make",
}
_DEVICE_NAME = re.compile(r"[A-Za-z0-9_\-]+")
# A Braket device's ARN: arn:aws:braket:<region>:<account>:device/<type>/<provider>/<device>
# (region and account empty for the global managed simulators).
BRAKET_ARN = re.compile(
    r"arn:aws:braket:(?P<region>[a-z0-9-]*):(?P<account>\d*):device/"
    r"(?P<type>qpu|quantum-simulator)/(?P<provider>[A-Za-z0-9_-]+)/(?P<device>[A-Za-z0-9_.-]+)"
)


def known_backends() -> list[str]:
    return sorted(str(family) for family in _FACTORIES)


def backend_family(spec: str) -> str:
    """A spec's backend name, before ':' (``aer-noisy`` of ``aer-noisy:fake_manila``): what
    ``[backends.<name>]`` tables of limits are keyed by."""
    return spec.partition(":")[0]


@cache
def get_backend(spec: str, max_qubits: int) -> Backend:
    """Backend for ``name[:argument]``; one instance per process, so pass managers are reused.

    ``aer``, ``aer-noisy:fake_brisbane``, ``ibm:ibm_torino`` (``ibm:fake_manila`` runs the
    runtime's local testing mode), ``braket-local``, ``braket-local:dm``,
    ``braket:arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet``,
    ``faulty:aer?transient=0.3&latency=10ms``.
    """
    name, argument = _split(spec)
    module, _, factory = _FACTORIES[BackendFamily(name)].partition(":")
    make: Callable[[str, int, Callable[[str], Backend]], Backend] = getattr(
        importlib.import_module(module), factory
    )
    return make(argument, max_qubits, lambda inner: get_backend(inner, max_qubits))


def check_backend_spec(spec: str) -> None:
    """Raise ConfigError with one line if ``spec`` names no backend or has bad arguments.

    Imports no qiskit: fake device names are checked against the fake provider's
    directory of snapshots, not by loading it.
    """
    name, argument = _split(spec)
    if name == "aer" and argument:
        raise ConfigError(f"aer takes no argument, not {argument!r}")
    if name == "aer-noisy":
        if not argument:
            raise ConfigError("aer-noisy needs a fake device: aer-noisy:fake_brisbane")
        _check_fake_device(argument)
    if name == "ibm":
        if not argument or not _DEVICE_NAME.fullmatch(argument):
            raise ConfigError(
                f"ibm needs a device name such as ibm:ibm_torino or ibm:fake_manila, not {spec!r}"
            )
        if argument.startswith("fake_"):
            _check_fake_device(argument)
    if name == "braket-local" and argument not in ("", "dm"):
        raise ConfigError(f"braket-local takes no argument or 'dm', not {argument!r}")
    if name == "braket" and not BRAKET_ARN.fullmatch(argument):
        raise ConfigError(
            "braket needs a device ARN such as "
            f"braket:arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet, not {spec!r}"
        )
    if name == "faulty":
        from pipeline.backends.faulty import parse_argument  # qiskit-free by design

        inner, _ = parse_argument(argument)
        check_backend_spec(inner)


def _split(spec: str) -> tuple[str, str]:
    name, _, argument = spec.partition(":")
    if name not in _FACTORIES:
        raise ConfigError(
            f"unknown backend {spec!r}; known backends: {', '.join(known_backends())}"
        )
    return name, argument


def _check_fake_device(name: str) -> None:
    """``fake_<x>`` exists when qiskit-ibm-runtime ships a snapshot directory ``<x>``."""
    found = importlib.util.find_spec("qiskit_ibm_runtime")  # locates without importing
    if not name.startswith("fake_") or not _DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"unknown fake device {name!r}; fake devices are named fake_<device>")
    if found is None or found.origin is None:
        return  # the runtime is not installed: building the backend will say so
    snapshots = Path(found.origin).parent / "fake_provider" / "backends"
    if snapshots.is_dir() and not (snapshots / name.removeprefix("fake_")).is_dir():
        known = sorted(
            f"fake_{p.name}" for p in snapshots.iterdir() if p.is_dir() and p.name[0] != "_"
        )
        raise ConfigError(f"unknown fake device {name!r}; known: {', '.join(known)}")
