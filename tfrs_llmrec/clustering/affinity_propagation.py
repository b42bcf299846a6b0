"""Affinity Propagation (Frey & Dueck, 2007) on scikit-learn, and EIMF's typical-user selection.

    result = affinity_propagation(similarity)            # similarity: float [n, n]
    result.exemplars       # int64 [K], indices of the points chosen as exemplars
    result.labels          # int64 [n], cluster of each point (an index into result.exemplars)
    result.converged       # the exemplar set stayed the same for `convergence_iter` iterations

    typical = select_typical_users(user_vectors, max_users=20_000)
    typical.exemplar_users # int64 [K], the users to send to the LLM
    typical.assignment     # int64 [U], each user's exemplar (an index into exemplar_users)

What scikit-learn does. `sklearn.cluster.AffinityPropagation(affinity="precomputed")` runs the
message passing: responsibilities r(i, k) and availabilities a(i, k), damped by `damping`, with
the preferences on the diagonal of the similarities and a seeded perturbation of the order of
the float64 epsilon (`random_state`). It stops once every point's exemplar
status has stayed the same for `convergence_iter` iterations (with at least one exemplar), or
after `max_iter` iterations; it then joins every point to its most similar exemplar and re-chooses
each cluster's exemplar once as the member with the largest summed similarity to the other
members (the preference counts for itself).

What this module adds.
- The default preference is the median of the off-diagonal similarities (scikit-learn's default
  also counts the diagonal), and the input diagonal is ignored.
- Ties. scikit-learn's epsilon-sized perturbation is lost in the rounding of the messages, so
  exactly tied points (identical users, equidistant pairs) can all stay exemplars, depending on
  the seed. The similarities and preferences get a seeded perturbation of `NOISE_SCALE` times
  their largest magnitude first; `seed` drives it and scikit-learn's `random_state`.
- One point, or off-diagonal similarities that are all equal up to float rounding (identical
  users): solved exactly without message passing. scikit-learn only special-cases exactly equal
  similarities with equal preferences, and then answers "arbitrary cluster center(s)" with a
  warning.
- Failed runs. scikit-learn flags non-convergence with a ConvergenceWarning only (returning the
  exemplars of the last iteration, or labels -1 and no exemplar at all), and a run that does
  "converge" can still settle on a poor transient (everyone alone when the preference is far below
  the similarities, or with heavy damping). A run is accepted when it converged, found an exemplar
  and its net similarity is at least that of both trivial solutions (the best single cluster,
  every point on its own); otherwise it is repeated with damping moved halfway to 1, up to
  `DAMPING_RETRIES` times, with `max_iter` and `convergence_iter` stretched to match the slower
  messages. If no run is accepted, the result is the best non-converged run that beats the trivial
  solutions (`converged=False`), or else the better trivial solution (`fallback=True`); `note`
  says which. So a result is never worse than a trivial one, and the worst case costs about 11
  (damping 0.7) or 7 (damping 0.5) times `max_iter` iterations; ordinary inputs are accepted on
  the first run. The warnings scikit-learn emits on the way (ConvergenceWarning, numpy
  deprecations inside its loop, one per iteration) become `converged` and `note`, not log lines.
- `select_typical_users`: clusters a seeded sample of at most `max_users` users (cosine
  similarity) and assigns everyone else to the nearest exemplar in chunks.

A call holds about seven [n, n] float64 arrays (the input, the perturbed copy, scikit-learn's
copy of it, its two messages, a scratch array and its perturbation), so keep n to a few
thousand: `select_typical_users` exists for that.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
from sklearn.cluster import AffinityPropagation
from sklearn.exceptions import ConvergenceWarning

# Exact ties (identical users, equidistant points) can keep both tied points as exemplars:
# sklearn's own perturbation (about 1e-16 relative) is lost in the rounding of the messages
# (measured: three tight pairs, 12-14 of 60 seeds ended with 4 exemplars instead of 3; 0 with
# this). A seeded perturbation this small relative to the similarities breaks ties without
# changing any clear-cut decision.
NOISE_SCALE = 1e-10
# Off-diagonal similarities that differ by no more than this (relative to their magnitude) are
# treated as all equal, the "every point identical" case, solved exactly without messages.
EQUAL_TOLERANCE = 1e-12
# Runs repeated with damping moved halfway to 1 when a run fails (see `affinity_propagation`).
DAMPING_RETRIES = 2

Preference = Union[float, np.ndarray, None]


@dataclass
class APResult:
    exemplars: np.ndarray  # int64 [K], point indices, ascending
    labels: np.ndarray  # int64 [n], index into `exemplars`; an exemplar has its own cluster
    iterations: int  # message-passing iterations run, all runs together (0 when none was needed)
    converged: bool
    # True when no run was acceptable (see `affinity_propagation`) and the result is a trivial one.
    fallback: bool = False
    damping: float = 0.7  # the damping of the run that produced the result
    note: str = ""  # why the result is not a plain first run, when it is not

    @property
    def n_clusters(self) -> int:
        return int(self.exemplars.shape[0])


@dataclass
class TypicalUsers:
    exemplar_users: np.ndarray  # int64 [K], indices into user_vectors, ascending
    assignment: np.ndarray  # int64 [U], index into exemplar_users; an exemplar maps to itself
    sampled: np.ndarray  # int64 [min(U, max_users)], users clustered by Affinity Propagation, ascending
    ap: APResult  # the clustering of the sample; ap.exemplars index into `sampled`

    @property
    def n_clusters(self) -> int:
        return int(self.exemplar_users.shape[0])


def _check_similarity(similarity) -> np.ndarray:
    matrix = np.asarray(similarity, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"similarity must be a square [n, n] matrix, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise ValueError("similarity is empty: need at least one point")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("similarity contains NaN or infinite values")
    return matrix


def _check_preference(preference: Preference, n: int, off_diagonal: np.ndarray) -> np.ndarray:
    if preference is None:
        return np.full(n, float(np.median(off_diagonal)) if off_diagonal.size else 0.0)
    values = np.asarray(preference, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(n, float(values))
    elif values.shape != (n,):
        raise ValueError(f"preference must be a scalar or an array of shape ({n},), got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("preference contains NaN or infinite values")
    return values.copy()


def _check_damping(damping: float) -> float:
    damping = float(damping)
    if not 0.5 <= damping < 1.0:
        raise ValueError(f"damping must be in [0.5, 1), got {damping}")
    return damping


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _assign(similarity: np.ndarray, exemplars: np.ndarray) -> np.ndarray:
    """Labels: each point's most similar exemplar (first on a tie); exemplars label themselves."""
    labels = np.argmax(similarity[:, exemplars], axis=1)
    labels[exemplars] = np.arange(exemplars.shape[0])
    return labels.astype(np.int64)


def _all_equal_solution(preferences: np.ndarray, common: float, tolerance: float) -> np.ndarray:
    """Exact optimum when every off-diagonal similarity equals `common`.

    The net similarity of an exemplar set E is n * common + sum_{k in E} (p_k - common), so the
    best set is every point whose preference beats `common` by more than `tolerance` (the float
    rounding of the similarities; the default preference, their median, is such a tie), or,
    when none does, the single point with the highest preference (ties go to the fewer clusters
    and the lowest index).
    """
    exemplars = np.flatnonzero(preferences - common > tolerance)
    if exemplars.size == 0:
        exemplars = np.array([int(np.argmax(preferences))])
    return exemplars.astype(np.int64)


def _net_similarity(similarity: np.ndarray, preferences: np.ndarray, exemplars: np.ndarray,
                    labels: np.ndarray) -> float:
    """The objective AP maximises: exemplars' preferences plus members' similarity to their exemplar."""
    members = np.ones(similarity.shape[0], dtype=bool)
    members[exemplars] = False
    rows = np.flatnonzero(members)
    return float(preferences[exemplars].sum() + similarity[rows, exemplars[labels[rows]]].sum())


def _trivial_solutions(similarity: np.ndarray, preferences: np.ndarray):
    """(net, exemplars) of the best single cluster and of every point on its own."""
    column_sums = similarity.sum(axis=0) - similarity.diagonal() + preferences
    best = int(np.argmax(column_sums))
    single = (float(column_sums[best]), np.array([best], dtype=np.int64))
    alone = (float(preferences.sum()), np.arange(similarity.shape[0], dtype=np.int64))
    return single, alone


def _sklearn_run(similarity: np.ndarray, preferences: np.ndarray, damping: float, max_iter: int,
                 convergence_iter: int, seed: Optional[int]) -> Tuple[np.ndarray, np.ndarray, int, bool]:
    """One scikit-learn run: (exemplars, labels, iterations, converged), its warnings turned into `converged`."""
    model = AffinityPropagation(affinity="precomputed", preference=preferences, damping=damping, max_iter=max_iter,
                                convergence_iter=convergence_iter, copy=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(similarity)
    converged = True
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            converged = False
        elif not issubclass(warning.category, DeprecationWarning):  # numpy's, from inside sklearn's loop
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    exemplars = np.asarray(model.cluster_centers_indices_, dtype=np.int64)
    return exemplars, np.asarray(model.labels_, dtype=np.int64), int(model.n_iter_), converged


def affinity_propagation(similarity: np.ndarray, preference: Preference = None, damping: float = 0.7,
                         max_iter: int = 300, convergence_iter: int = 15,
                         seed: Optional[int] = 0) -> APResult:
    """Clusters n points given their pairwise similarities (larger = more alike).

    `similarity[i, k]` says how well k would serve as i's exemplar; it need not be symmetric, and
    its diagonal is ignored: `preference` (a scalar, or one value per point; default the median
    of the off-diagonal similarities) takes its place. `damping` (the weight kept from the previous
    message, in [0.5, 1)), `max_iter` and `convergence_iter` go to scikit-learn's
    AffinityPropagation; `seed` drives the tie-breaking perturbation (`NOISE_SCALE`) and
    scikit-learn's `random_state` (equal seeds give equal results).

    A run that did not converge, found no exemplar, or has a net similarity below that of the best
    single cluster or of every point on its own, is repeated with damping moved halfway to 1, up to
    `DAMPING_RETRIES` times, with `max_iter` and `convergence_iter` stretched by 2 per retry (or
    by 0.5 / (1 - damping) if more); `damping` in the result is the one that produced it and
    `iterations` counts every run. If no run is accepted, the result is the non-converged run with
    the highest net similarity among those that beat both trivial solutions (`converged=False`),
    or, when none does (typically: no exemplar at all), the better trivial solution, flagged with
    `fallback=True`. `note` explains any result that is not a plain first run.
    """
    similarity = _check_similarity(similarity)
    n = similarity.shape[0]
    off_diagonal = similarity[~np.eye(n, dtype=bool)]
    preferences = _check_preference(preference, n, off_diagonal)
    damping = _check_damping(damping)
    max_iter = _check_positive_int("max_iter", max_iter)
    convergence_iter = _check_positive_int("convergence_iter", convergence_iter)

    if n == 1:
        return APResult(np.zeros(1, np.int64), np.zeros(1, np.int64), 0, True, damping=damping)
    magnitude = float(np.max(np.abs(off_diagonal)))
    if float(np.ptp(off_diagonal)) <= EQUAL_TOLERANCE * magnitude:
        exemplars = _all_equal_solution(preferences, float(np.mean(off_diagonal)), EQUAL_TOLERANCE * magnitude)
        return APResult(exemplars, _assign(similarity, exemplars), 0, True, damping=damping,
                        note="all off-diagonal similarities are equal: solved exactly")
    del off_diagonal

    noisy = np.random.default_rng(seed).standard_normal((n, n))
    noisy *= NOISE_SCALE * magnitude
    noisy_preferences = preferences + noisy.diagonal()
    noisy += similarity

    (single_net, single), (alone_net, alone) = _trivial_solutions(similarity, preferences)
    floor = max(single_net, alone_net)
    tolerance = 1e-9 * (abs(floor) + 1.0)
    total_iterations = 0
    candidate = None  # (net, exemplars, labels, damping) of the best non-converged run above the floor
    found_any = False  # whether some run ended with at least one exemplar
    for attempt in range(DAMPING_RETRIES + 1):
        # Messages move (1 - damping) of the way per iteration: a retry gets the iterations a run
        # at the first damping, or at 0.5 (where the usual convergence_iter is calibrated), had.
        scale = 1.0 if attempt == 0 else max(2.0 ** attempt, 0.5 / (1.0 - damping))
        exemplars, labels, iterations, converged = _sklearn_run(
            noisy, noisy_preferences, damping, math.ceil(max_iter * scale), math.ceil(convergence_iter * scale), seed)
        total_iterations += iterations
        if exemplars.size:
            found_any = True
            net = _net_similarity(similarity, preferences, exemplars, labels)
            if net >= floor - tolerance:
                if converged:
                    note = "" if attempt == 0 else f"retried with damping {damping:g} after a failed run"
                    return APResult(exemplars, labels, total_iterations, True, damping=damping, note=note)
                if candidate is None or net > candidate[0]:
                    candidate = (net, exemplars, labels, damping)
        if attempt < DAMPING_RETRIES:
            damping = 1.0 - (1.0 - damping) / 2.0

    if candidate is not None:
        _, exemplars, labels, used = candidate
        return APResult(exemplars, labels, total_iterations, False, damping=used,
                        note=f"no run converged; the exemplars of the last iteration of the best run "
                             f"(damping {used:g})")
    exemplars = single if single_net >= alone_net else alone
    why = ("message passing found no exemplar" if not found_any
           else "message passing only found solutions worse than a trivial one")
    return APResult(exemplars, _assign(similarity, exemplars), total_iterations, False, fallback=True,
                    damping=damping, note=f"{why}; " + ("one cluster around the best exemplar" if exemplars.size == 1
                                                        else "every point on its own"))


def _normalised_rows(block: np.ndarray, offset: int) -> np.ndarray:
    rows = np.asarray(block, dtype=np.float64)
    if not np.all(np.isfinite(rows)):
        bad = offset + int(np.flatnonzero(~np.all(np.isfinite(rows), axis=1))[0])
        raise ValueError(f"user_vectors row {bad} contains NaN or infinite values")
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    if np.any(norms == 0):
        raise ValueError(f"user_vectors row {offset + int(np.flatnonzero(norms == 0)[0])} is all zeros; "
                         "cosine similarity is undefined for it")
    return rows / norms[:, None]


def select_typical_users(user_vectors: np.ndarray, max_users: int, preference: Preference = None,
                         damping: float = 0.7, seed: Optional[int] = 0, chunk: int = 8192) -> TypicalUsers:
    """Picks exemplar ("typical") users and maps every user to one of them.

    Users are compared by cosine similarity (rows are re-normalised, so L2-normalised input is
    used as is). With U <= max_users every user is clustered by `affinity_propagation`; otherwise
    a seeded uniform sample of max_users users is, and every user is then assigned to its most
    similar exemplar, `chunk` rows at a time, so memory stays O(chunk * (d + K) + max_users^2).
    An exemplar is always assigned to itself; `preference` (on the cosine scale, default the
    median similarity of the sample) and `damping` go to `affinity_propagation`.
    """
    vectors = np.asarray(user_vectors)
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ValueError(f"user_vectors must be a non-empty [U, d] array, got shape {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.number) or np.issubdtype(vectors.dtype, np.complexfloating):
        raise ValueError(f"user_vectors must be real numbers, got dtype {vectors.dtype}")
    max_users = _check_positive_int("max_users", max_users)
    chunk = _check_positive_int("chunk", chunk)
    _check_damping(damping)
    n_users = vectors.shape[0]
    for start in range(0, n_users, chunk):  # validate everything before the quadratic work
        _normalised_rows(vectors[start:start + chunk], start)

    if n_users <= max_users:
        sampled = np.arange(n_users, dtype=np.int64)
    else:
        sampled = np.sort(np.random.default_rng(seed).choice(n_users, size=max_users, replace=False))
        sampled = sampled.astype(np.int64)
    sample = _normalised_rows(vectors[sampled], 0)
    ap = affinity_propagation(sample @ sample.T, preference=preference, damping=damping, seed=seed)
    del sample

    exemplar_users = sampled[ap.exemplars]
    exemplar_rows = _normalised_rows(vectors[exemplar_users], 0)
    assignment = np.empty(n_users, dtype=np.int64)
    for start in range(0, n_users, chunk):
        block = _normalised_rows(vectors[start:start + chunk], start)
        assignment[start:start + block.shape[0]] = np.argmax(block @ exemplar_rows.T, axis=1)
    assignment[exemplar_users] = np.arange(exemplar_users.shape[0])
    return TypicalUsers(exemplar_users, assignment, sampled, ap)
