"""Settings: every knob, its embedded default and its bounds, section by section.

Every knob has a default that works on one laptop; the same file scales out by
naming a PostgreSQL URL, a Dask scheduler address and a Prefect server. Where values
come from (``qhopper.toml``, the environment, command-line options) is
:mod:`pipeline.config_sources`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from pipeline.canary.vocabulary import ProblemKind
from pipeline.errors import ConfigError
from pipeline.redact import redact_text
from pipeline.timebounds import LONGEST_DURATION_S
from pipeline.vocabulary import BackendFamily, RefineMode

DEFAULT_HOME = Path(".qhopper")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntakeSettings(_Section):
    database_url: str | None = None  # default: SQLite file under the home
    lease_seconds: float = Field(default=600.0, gt=0, le=LONGEST_DURATION_S)
    max_attempts: int = Field(default=3, ge=1)
    claim_limit: int = Field(default=100_000, ge=1)


class LimitSettings(_Section):
    max_variables: int = Field(default=2_000, ge=1)
    max_terms: int = Field(default=200_000, ge=1)
    max_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_record_bytes: int = Field(default=4 * 1024 * 1024, ge=1)


class QuantumSettings(_Section):
    backend: str = "aer"
    # Larger problems go to CP-SAT. 20: on the fast path one problem's refinement (40
    # evaluations and the shots) takes ~2 s at p=2 (~3 s at p=3) and ~37 MiB; at 22 it
    # takes 8-22 s at p=2 (benchmarks/bench_fastpath.py, 2 loaded cores).
    max_qubits: int = Field(default=20, ge=1, le=32)
    default_reps: int = Field(
        default=2, ge=1, le=10
    )  # p=2: ~0.86 vs ~0.79 expectation ratio for ~2x the work
    default_shots: int = Field(default=1024, ge=1, le=1_000_000)
    # A batch holds as many problems as make batch_seconds of expected compute on the
    # backend (batching.batch_sizes), at most max_batch_size: a batch's bookkeeping costs
    # the same whatever its size, so small problems go in large batches.
    max_batch_size: int = Field(default=1024, ge=1)
    batch_seconds: float = Field(default=2.0, gt=0)
    max_iterations: int = Field(default=40, ge=1)
    seed: int = 7
    # Stay one layer shallower when the angle library shows the extra layer raised the
    # expectation ratio by less than this (None: always the requested depth).
    min_depth_gain: float | None = Field(default=0.01, ge=0)
    # A class's pilots run once per run; the other problems of the class follow them:
    # "auto" takes their angles with no evaluation once the class is confirmed (below) and
    # on the pilots' graph, else one Newton step each; "always" always steps; "never" takes
    # the class's angles as they are.
    refine: RefineMode = RefineMode.AUTO
    # Confirmed: followers on confirm_problems problems measured transfer losing under
    # free_loss of the energy (qaoa.angles.DEFAULT_FREE_LOSS); such a class needs two
    # pilots a run, which move its entry to the run's graph.
    free_loss: float = Field(default=3e-2, ge=0)
    confirm_problems: int = Field(default=50, ge=1)
    # How long a run waits for another run's pilots of a new class before its own.
    pilot_wait_s: float = Field(default=60.0, ge=0)
    # On a device (a QPU, or a local stand-in for one): problems of one depth and shots share
    # one circuit, each on its own region of the chip (multi-programming); false: one each.
    packing: bool = True
    # A region takes a problem only where the batch's circuit keeps this share of its estimated
    # success probability in the best region (the product of 1 - error over its gates and
    # readouts): fewer problems a circuit, none on the chip's poor qubits.
    packing_fidelity: float = Field(default=0.75, ge=0, le=1)
    # On a device every optimiser step is a billed job: by default a problem takes its class's
    # angles (library or published) and is sampled at once; n > 0 samples n angle sets about
    # them first (one job for the batch) and answers from the best.
    device_evaluations: int = Field(default=0, ge=0, le=64)


class ClassicalSettings(_Section):
    time_limit_s: float = Field(default=10.0, gt=0)
    # Classical batches are sized like quantum ones: batch_seconds of CP-SAT's expected time.
    max_batch_size: int = Field(default=1024, ge=1)
    batch_seconds: float = Field(default=2.0, gt=0)
    workers: int = Field(default=1, ge=1)
    # Every quantum answer gets a classical reference: exact enumeration up to this size,
    # a CP-SAT task with the short limit beside the quantum batch up to the next, none above.
    reference_exhaustive_max_variables: int = Field(default=16, ge=0, le=24)
    # Classical problems this small are settled by enumerating every assignment (proven,
    # ~0.1-2 ms against CP-SAT's ~3-5 ms start) and go to the workers many per task.
    enumerate_max_variables: int = Field(default=12, ge=0, le=20)
    reference_max_variables: int = Field(default=200, ge=0)
    reference_time_limit_s: float = Field(default=2.0, gt=0)


class PriceSettings(_Section):
    """What each attempt costs; every attempt is billed, failed ones included."""

    # Simulators and CP-SAT are priced as on-demand cloud compute: AWS EC2 lists general-purpose
    # instances at about USD 0.04-0.05 per vCPU-hour (m7i.large, us-east-1, USD 0.1008/h for
    # 2 vCPU; https://aws.amazon.com/ec2/pricing/on-demand/).
    cpu_usd_per_core_second: float = Field(default=0.04 / 3600, ge=0)
    # IBM Quantum Pay-As-You-Go plan: USD 96 per minute of QPU time, billed per second
    # (https://www.ibm.com/quantum/pricing).
    qpu_usd_per_second: float = Field(default=96.0 / 60, ge=0)
    # QPU time a job takes, for estimates before it runs (IBM bills measured usage afterwards):
    # a fixed per-job overhead plus one repetition delay per shot, 250 us being the default
    # rep_delay of IBM Eagle and Heron devices (https://docs.quantum.ibm.com/guides/estimate-job-run-time).
    qpu_seconds_per_job: float = Field(default=2.0, ge=0)
    qpu_seconds_per_shot: float = Field(default=250e-6, ge=0)

    def qpu_seconds(self, jobs: int, executions: int) -> float:
        """The QPU time ``jobs`` running ``executions`` (circuits times shots) take."""
        return jobs * self.qpu_seconds_per_job + executions * self.qpu_seconds_per_shot


class BudgetSettings(_Section):
    """Spending limits the router enforces before a batch runs and workers enforce while it runs."""

    per_problem_usd: float = Field(default=0.05, ge=0)
    per_run_usd: float = Field(default=50.0, ge=0)
    # Per tenant and run, e.g. {research = 5.0}; a tenant not listed is bounded by the run budget.
    tenant_quota_usd: dict[str, float] = Field(default_factory=dict)


class RetrySettings(_Section):
    """Bounded retries with exponential backoff and full jitter, on transient errors only."""

    max_attempts: int = Field(default=4, ge=1, le=20)  # per backend call, the first one included
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    # After this many calls in a row ran out of retries, a worker skips the backend this long.
    breaker_threshold: int = Field(default=2, ge=1)
    breaker_cooldown_s: float = Field(default=60.0, ge=0)


class TimeoutSettings(_Section):
    """Per job: how long it may wait to start and how long it may run (the run's is dask.run_timeout_s)."""

    submit_s: float = Field(default=600.0, gt=0)
    execute_s: float = Field(default=900.0, gt=0)


class BackendLimitSettings(_Section):
    """One backend's provider limits in ``[backends.<name>]`` (the spec before ':', as in
    ``[backends.aer-noisy]``), over what the backend declares (pipeline.backends.limits, where
    each default is cited). A field left out keeps the declared value."""

    executables_per_job: int | None = Field(default=None, ge=1)  # circuit x parameter-set bindings
    shots_per_executable: int | None = Field(default=None, ge=1)
    executions_per_job: int | None = Field(default=None, ge=1)  # executables x shots
    payload_bytes: int | None = Field(default=None, ge=1)  # estimated size of a job's PUBs
    jobs_in_flight: int | None = Field(default=None, ge=1)  # a call's jobs submitted at once
    # Shots an estimator executable takes where the provider estimates from shots (Braket).
    estimator_shots: int | None = Field(default=None, ge=1)
    one_shot_count_per_job: bool | None = None  # a job runs one shots count (Braket)

    def given(self) -> dict[str, int]:
        """The fields this table sets, by name."""
        return self.model_dump(exclude_none=True)


class RoutingSettings(_Section):
    """Inputs of the routing estimates that no backend can state about itself."""

    simulator_memory_bytes: int = Field(default=4 * 1024**3, ge=1)  # per worker process
    compile_estimate_s: float = Field(default=2.0, ge=0)  # a template not in the store yet
    qpu_queue_estimate_s: float = Field(default=900.0, ge=0)  # expected wait on a shared QPU


class ResultsSettings(_Section):
    """Where result Parquet goes: under the home by default, or one dataset many hosts share."""

    # A local path, a file:// URL (a shared mount: NFS, EFS, SMB) or any fsspec URL (s3://,
    # gs://, az://, memory://): runs of several hosts then write one hive-partitioned dataset.
    url: str | None = None
    # fsspec options for a URL, e.g. {endpoint_url = "http://minio:9000"} for s3://; s3fs
    # also reads AWS_ENDPOINT_URL and the usual AWS credentials from the environment.
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if not value or "://" not in value or value.startswith("file://"):
            return value
        scheme, _, rest = value.partition("://")
        from fsspec.registry import available_protocols, known_implementations, registry

        if scheme not in available_protocols():
            raise ValueError(
                f"results url {value!r}: fsspec knows no scheme {scheme!r}; use a local path, "
                "file://, or an fsspec URL such as s3://bucket/results"
            )
        needs = known_implementations.get(scheme, {}).get("class", "")
        module = needs.split(".", 1)[0]
        if scheme not in registry and module and importlib.util.find_spec(module) is None:
            raise ValueError(f"results url {value!r} needs the package {module!r} installed")
        if not rest.strip("/"):
            raise ValueError(f"results url {value!r} names no bucket or folder")
        return value

    @field_validator("storage_options")
    @classmethod
    def _options_need_a_url(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        url = info.data.get("url") or ""
        if value and ("://" not in url or url.startswith("file://")):
            raise ValueError("storage options apply only to an fsspec URL in results.url")
        return value


class DaskSettings(_Section):
    address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    run_timeout_s: float = Field(default=3600.0, gt=0)  # the longest a run waits for its batches
    # A run whose estimated work is below this many core-seconds runs in-process: starting a
    # LocalCluster (worker processes importing Qiskit, Aer, OR-Tools) costs ~3 s of wall time
    # and more CPU, so two workers only pay for themselves above about twice that.
    inline_below_s: float = Field(default=6.0, ge=0)
    start_timeout_s: float = Field(default=120.0, gt=0)  # the longest a cluster may take to start


class CanarySettings(_Section):
    """``[canary]``: a seeded share of every run's quantum batches sampled again, whole, on a
    candidate backend at the angles the main backend reached, beside the run and never in
    its way (flows.canary); ``qhopper canary`` judges the candidate by ``tolerance`` and
    ``min_samples``."""

    backend: str | None = None  # the candidate's spec, e.g. "aer-noisy:fake_manila"; None: off
    fraction: float = Field(default=0.1, gt=0, le=1)  # of the quantum batches, drawn per batch
    kinds: tuple[ProblemKind, ...] | None = None  # only these kinds (None: every kind)
    max_qubits: int | None = Field(default=None, ge=1)  # only problems this small (None: any)
    # Agreement: the mean |difference| of the expectations, as a share of the classical
    # reference (for a maximum answered below it: the difference of expectation ratios),
    # at most this, over at least min_samples answers. 0.02: two points of ratio, well
    # above Aer's own spread at the same angles (none) and below a noisy 5-qubit device's
    # decoherence loss at p=2.
    tolerance: float = Field(default=0.02, ge=0)
    min_samples: int = Field(default=20, ge=1)
    # How long a run waits at its very end, after its answers are committed, for canary work
    # still out; what is not back by then is written as a failed canary row.
    wait_s: float = Field(default=60.0, gt=0, le=LONGEST_DURATION_S)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from pipeline.backends.registry import check_backend_spec  # no import circle

        try:
            check_backend_spec(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value


class ApiSettings(_Section):
    """The HTTP service (``qhopper api``): tenants and their token hashes, limits, solve bounds."""

    # Each tenant's name and the SHA-256 hex digest of its bearer token (never the token);
    # names and digests are checked when the service starts (flows.api.auth).
    tenants: dict[str, str] = Field(default_factory=dict)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1)  # raw request body, chunked too
    # All bodies being read or handled at once (a body costs up to ~25x its size parsed): 503
    max_body_bytes_in_flight: int = Field(default=16 * 1024 * 1024, ge=1)
    body_timeout_s: float = Field(default=15.0, gt=0)  # a whole body must arrive within: 408
    max_connections: int = Field(default=200, ge=1)  # open connections; a request beyond: 503
    rate_per_minute: float = Field(default=600.0, gt=0)  # requests per tenant (a token bucket)
    burst: int = Field(default=60, ge=1)  # requests a tenant may make at once
    # The longest /v1/solve may wait (its deadline is now plus this: bounded like any duration).
    max_solve_timeout_s: float = Field(default=60.0, gt=0, le=LONGEST_DURATION_S)
    solve_workers: int = Field(default=1, ge=1)  # synchronous solves running side by side
    solve_queue: int = Field(default=8, ge=0)  # solves that may wait for a worker; more: 429
    drain_s: float = Field(default=8.0, ge=0)  # on SIGTERM: how long in-flight requests get
    warm_up: bool = True  # solve a small problem at start-up, so the first caller is not slower
    docs: bool = False  # serve /docs and /redoc: pages that load their scripts from a CDN


class Settings(_Section):
    home: Path = DEFAULT_HOME
    intake: IntakeSettings = IntakeSettings()
    limits: LimitSettings = LimitSettings()
    quantum: QuantumSettings = QuantumSettings()
    classical: ClassicalSettings = ClassicalSettings()
    prices: PriceSettings = PriceSettings()
    budget: BudgetSettings = BudgetSettings()
    retry: RetrySettings = RetrySettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    routing: RoutingSettings = RoutingSettings()
    results: ResultsSettings = ResultsSettings()
    dask: DaskSettings = DaskSettings()
    api: ApiSettings = ApiSettings()
    canary: CanarySettings = CanarySettings()
    backends: dict[str, BackendLimitSettings] = Field(default_factory=dict)

    @field_validator("backends")
    @classmethod
    def _known_backends(
        cls, value: dict[str, BackendLimitSettings]
    ) -> dict[str, BackendLimitSettings]:
        known = sorted(str(family) for family in BackendFamily)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"no backend named {', '.join(map(repr, unknown))}; "
                f"tables are named after one of: {', '.join(known)}"
            )
        return value

    @property
    def database_url(self) -> str:
        return self.intake.database_url or f"sqlite:///{(self.home / 'intake.db').resolve()}"

    @property
    def results_location(self) -> ResultsLocation:
        """The results folder or URL."""
        if self.results.url:
            return ResultsLocation(self.results.url, self.results.storage_options)
        return ResultsLocation(str(self.home / "results"))

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"


@dataclass(frozen=True)
class ResultsLocation:
    """A results URL or path, and the fsspec storage options for a URL."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # credentials

    @classmethod
    def of(cls, where: ResultsLocation | Path | str) -> ResultsLocation:
        """A location from a location, a local path, or a URL as ``[results] url`` takes it."""
        return where if isinstance(where, ResultsLocation) else cls(str(where))

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def path(self) -> Path:
        """The local folder; a URL with another scheme has none."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local folder")
        return Path(self.url.removeprefix("file://"))

    def __str__(self) -> str:
        return str(self.path.resolve()) if self.is_local else redact_text(self.url.rstrip("/"))
