"""What the fast path allocates, stated before it runs: for cost models and chunk sizing.

Kept free of numba and NumPy imports, so a cost model can ask without loading the
simulator. The figures are those of :mod:`pipeline.qaoa.fast_sim` (which explains the
layout) and are held to measurement by ``benchmarks/bench_memory.py``.
"""

from __future__ import annotations

MAX_QUBITS = 24  # the fast simulator's limit
MAX_LEVELS = 1 << 16  # level indices are uint16; more distinct energies keep the diagonal

# Peak bytes per amplitude of the full 2^n register that Aer's statevector sampler holds
# when a chunk's shots are taken: its complex128 statevector (benchmarks/bench_memory.py
# measures 16.0 on Aer 0.18 at 22 qubits).
AER_SAMPLING_BYTES_PER_STATE = 16
# What a chunk allocates whatever its size: tasks and answers, the shots, Aer's run and
# result objects, allocator slack (bench_memory.py: 6-7 MiB at 14-16 qubits).
CHUNK_OVERHEAD_BYTES = 8 * 2**20


def kept_states(n_qubits: int, symmetric: bool) -> int:
    """Amplitudes stored for one state: half of them when the costs are flip-symmetric."""
    return 1 << (n_qubits - 1 if symmetric and n_qubits > 1 else n_qubits)


def fast_path_bytes(n_qubits: int, problems: int, symmetric: bool = False) -> int:
    """Peak bytes a fast-path chunk of ``problems`` problems on ``n_qubits`` allocates.

    Above the worker's baseline (interpreter, libraries, compiled kernels): every
    problem's data at 8 bytes a kept state at most (a diagonal; a level index takes 2),
    plus the largest working set, which is either building one problem's data (its
    diagonal, a sorted copy and the level index: 18 bytes a state) or one final state
    with a full objective diagonal (16 bytes a kept state, 8 a state of the register);
    shots drawn from the exact final state reuse that state's arrays (16 bytes a kept
    state, the data still held); where the shots are sampled on Aer instead, the data
    are released first and Aer's own peak is ``AER_SAMPLING_BYTES_PER_STATE`` a state;
    and ``CHUNK_OVERHEAD_BYTES``.
    ``symmetric``: no linear field in any problem (half the states are kept); the
    default assumes the worst case.
    """
    states = kept_states(n_qubits, symmetric)
    full = 1 << n_qubits
    held = problems * 8 * states
    working = max(18 * states, 16 * states + 8 * full)
    return CHUNK_OVERHEAD_BYTES + max(held + working, AER_SAMPLING_BYTES_PER_STATE * full)
