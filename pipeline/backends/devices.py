"""Targets of IBM devices, real or fake: what aer-noisy and ibm compile for.

A device is loaded on first use (a real one needs a network connection), so building
a backend, and checking a spec, costs nothing until a template is compiled or a job runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import cache, cached_property
from typing import Any

from qiskit.transpiler import StagedPassManager, Target, generate_preset_pass_manager

from pipeline.backends.base import CompileTarget
from pipeline.errors import ConfigError

OPTIMIZATION_LEVEL = 1
# A local stand-in for a device samples each region of a circuit as a density matrix with the
# device's noise: 16 * 4**12 bytes = 256 MiB per region at most.
STAND_IN_QUBITS = 12


@cache
def fake_device(name: str) -> Any:
    """A fake IBM device of qiskit-ibm-runtime's fake provider, by its name (``fake_brisbane``)."""
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some snapshots warn that they are not typical
        devices = {device.name: device for device in FakeProviderForBackendV2().backends()}
    if name not in devices:
        raise ConfigError(f"unknown fake device {name!r}; known: {', '.join(sorted(devices))}")
    return devices[name]


class DeviceTarget(CompileTarget):
    """A device's own target: its basis gates and coupling map, so routing adds SWAPs."""

    is_device = True

    def __init__(
        self, name: str, max_qubits: int, load: Callable[[], Any], label_prefix: str
    ) -> None:
        super().__init__(name, max_qubits)
        self._load = load
        self._label_prefix = label_prefix

    @cached_property
    def device(self) -> Any:
        return self._load()

    @property
    def label(self) -> str:
        version = getattr(self.device, "backend_version", "0")
        return f"{self._label_prefix}-{self.device.name}-{version}-O{OPTIMIZATION_LEVEL}"

    @property
    def transpiler_target(self) -> Target:
        target: Target = self.device.target
        return target

    def _build_pass_manager(self) -> StagedPassManager:
        return generate_preset_pass_manager(
            optimization_level=OPTIMIZATION_LEVEL, backend=self.device
        )
