"""A class's optimal angles as a function of each problem's features, learned by following.

Where taking the class's mean optimum loses too much (heavy-tailed weights), the problems
that follow a class's pilots each take one Newton step, and where the Newton model puts
their optima is a sample of how the optimum moves with the problem
(:mod:`pipeline.qaoa.features`). A linear fit of those optima on the features predicts a
new problem's angles with no evaluation; what the fit leaves unexplained lies mostly along
one direction of angle space (measured in the curvature's metric), which one line search
of two evaluations corrects. So a class's second run costs two evaluations a problem where
one Newton step each cost 2p + 1.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

RIDGE = 1e-8  # keeps the fit solvable where a feature is constant (one graph, equal weights)
MIN_SAMPLES = 20  # fewer followers than this fit no model
MAX_SAMPLES = 2_000  # a run keeps no more for a class (a large run's would fill memory)
PROBE = 0.03  # the line search's half-step along its direction (radians)
FLOOR = 1e-3  # the smallest curvature eigenvalue the metric keeps


@dataclass(frozen=True)
class ModelSamples:
    """What following taught about a class: each follower's features and where the Newton
    model puts its optimum (gammas then betas)."""

    features: tuple[tuple[float, ...], ...]
    optima: tuple[tuple[float, ...], ...]

    def __add__(self, other: ModelSamples) -> ModelSamples:
        """Both, up to ``MAX_SAMPLES`` (the first ones)."""
        features = (self.features + other.features)[:MAX_SAMPLES]
        return ModelSamples(features, (self.optima + other.optima)[:MAX_SAMPLES])

    def __len__(self) -> int:
        return len(self.optima)


@dataclass(frozen=True)
class AngleModel:
    """theta(f) = coefficients^T [1, f], and the unit direction along which its residuals
    cost most (one line search there corrects a prediction), with the class's curvature."""

    coefficients: tuple[tuple[float, ...], ...]  # (1 + features, 2p)
    direction: tuple[float, ...]  # (2p,), unit length
    curvature: tuple[float, ...]  # the class's Hessian (2p x 2p), flattened
    problems: int  # how many followers it was fitted on
    # Where the features it was fitted on lie (their mean and inverse covariance): how far
    # outside them a new problem is (:meth:`risk`), where its prediction is least sure.
    feature_mean: tuple[float, ...] = ()
    feature_precision: tuple[float, ...] = ()
    # The least and greatest of each angle among the optima fitted on: a prediction stays
    # within them (a problem with extreme features would otherwise be sent far off).
    lowest: tuple[float, ...] = ()
    highest: tuple[float, ...] = ()

    @classmethod
    def fit(cls, samples: ModelSamples, hessian: FloatArray) -> AngleModel | None:
        """Least squares per angle (intercept free); the direction is the residuals' main
        axis in the curvature's metric. None: too few samples."""
        if len(samples) < MIN_SAMPLES:
            return None
        features = np.asarray(samples.features, dtype=np.float64)
        optima = np.asarray(samples.optima, dtype=np.float64)
        design = np.column_stack([np.ones(len(features)), features])
        penalty = np.sqrt(RIDGE) * np.eye(design.shape[1])[1:]
        padded = np.vstack([design, penalty])
        target = np.vstack([optima, np.zeros((len(penalty), optima.shape[1]))])
        coefficients = np.linalg.lstsq(padded, target, rcond=None)[0]
        residuals = optima - design @ coefficients
        return cls(
            tuple(map(tuple, coefficients.tolist())),
            tuple(costliest_direction(residuals, hessian).tolist()),
            tuple(np.asarray(hessian, dtype=np.float64).ravel().tolist()),
            len(samples),
            tuple(features.mean(axis=0).tolist()),
            tuple(np.linalg.pinv(np.cov(features, rowvar=False)).ravel().tolist()),
            tuple(optima.min(axis=0).tolist()),
            tuple(optima.max(axis=0).tolist()),
        )

    def predict(self, features: FloatArray) -> FloatArray:
        """Each problem's predicted optimum (problems, 2p), within the optima fitted on."""
        design = np.column_stack([np.ones(len(features)), features])
        predicted = design @ np.asarray(self.coefficients)
        return np.asarray(np.clip(predicted, self.lowest, self.highest), dtype=np.float64)

    def risk(self, features: FloatArray) -> FloatArray:
        """Each problem's squared Mahalanobis distance from the features fitted on."""
        offsets = features - np.asarray(self.feature_mean)
        precision = np.asarray(self.feature_precision).reshape(offsets.shape[1], -1)
        return np.asarray(np.einsum("ij,jk,ik->i", offsets, precision, offsets))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AngleModel:
        """The model stored as :meth:`to_json` wrote it; ValueError where it is not one."""
        try:
            fields = json.loads(text)
            model = cls(
                tuple(tuple(float(c) for c in row) for row in fields["coefficients"]),
                tuple(float(v) for v in fields["direction"]),
                tuple(float(v) for v in fields["curvature"]),
                int(fields["problems"]),
                tuple(float(v) for v in fields["feature_mean"]),
                tuple(float(v) for v in fields["feature_precision"]),
                tuple(float(v) for v in fields["lowest"]),
                tuple(float(v) for v in fields["highest"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an angle model: {exc}") from exc
        dims = len(model.direction)
        sizes = {len(row) for row in model.coefficients}
        bounds = {len(model.lowest), len(model.highest)}
        if sizes != {dims} or len(model.curvature) != dims * dims or bounds != {dims}:
            raise ValueError(f"an angle model of inconsistent sizes: {sizes}, {dims}")
        return model

    @property
    def hessian(self) -> FloatArray:
        dims = len(self.direction)
        return np.asarray(self.curvature, dtype=np.float64).reshape(dims, dims)


def costliest_direction(residuals: FloatArray, hessian: FloatArray) -> FloatArray:
    """The unit direction d = H^{-1/2} e_1, e_1 the main axis of H^{1/2} Cov(R) H^{1/2}:
    along it the residuals lose most energy under the quadratic model (H floored at FLOOR
    where it is not positive definite)."""
    values, vectors = np.linalg.eigh(0.5 * (hessian + hessian.T))
    values = np.maximum(values, FLOOR)
    root = vectors @ np.diag(np.sqrt(values)) @ vectors.T
    inverse_root = vectors @ np.diag(1 / np.sqrt(values)) @ vectors.T
    spread = root @ np.cov(residuals, rowvar=False) @ root
    main = np.linalg.eigh(spread)[1][:, -1]
    direction = inverse_root @ main
    return np.asarray(direction / np.linalg.norm(direction), dtype=np.float64)
