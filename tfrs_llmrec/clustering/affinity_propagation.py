"""Affinity Propagation (Frey & Dueck, 2007) and EIMF's typical-user selection.

    result = affinity_propagation(similarity)            # similarity: float [n, n]
    result.exemplars       # int64 [K], indices of the points chosen as exemplars
    result.labels          # int64 [n], cluster of each point (an index into result.exemplars)
    result.converged       # the exemplar set stayed the same for `convergence_iter` iterations

    typical = select_typical_users(user_vectors, max_users=20_000)
    typical.exemplar_users # int64 [K], the users to send to the LLM
    typical.assignment     # int64 [U], each user's exemplar (an index into exemplar_users)

Message passing. Every point i sends every candidate exemplar k a responsibility

    r(i, k) = s(i, k) - max_{k' != k} [a(i, k') + s(i, k')]

(how much better k suits i than the best alternative) and every k answers with an availability

    a(i, k) = min(0, r(k, k) + sum_{i' not in {i, k}} max(0, r(i', k)))     for i != k
    a(k, k) = sum_{i' != k} max(0, r(i', k))

(how much support k has collected from the other points). The diagonal s(k, k) holds the
preference of k: the higher it is, the more exemplars. Each update is damped,
m <- damping * m_old + (1 - damping) * m_new, and point k is an exemplar while
a(k, k) + r(k, k) > 0. Every point then joins its most similar exemplar, and each cluster's
exemplar is re-chosen once as the member with the largest summed similarity to the other
members (the preference counts for itself), the refinement Frey & Dueck's own code ends with.

When messages fail (they oscillate when the preference is far below the similarities, and
with heavy damping they can settle on a transient), the run is repeated with more damping; a
result that still has no exemplar, or a lower net similarity than a trivial solution (one
cluster, or every point alone), is replaced by a flagged fallback. So a result is never worse
than a trivial one, and the worst case costs about 11 (damping 0.7) or 7 (damping 0.5) times
`max_iter` iterations; ordinary inputs converge in the first run.

All arithmetic is float64 and vectorised; one run holds five [n, n] arrays (the input, the
noisy similarities, responsibilities, availabilities and one scratch array), so keep n to a few
thousand and use `select_typical_users`, which clusters a sample and assigns everyone else to
the nearest exemplar in chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

# Ties (identical points, equal similarities) make the messages oscillate; a seeded perturbation
# this small relative to the similarities breaks them without changing any clear-cut decision.
NOISE_SCALE = 1e-10
# Off-diagonal similarities that differ by no more than this (relative to their magnitude) are
# treated as all equal, the "every point identical" case, solved exactly without messages.
EQUAL_TOLERANCE = 1e-12
# Runs repeated with damping moved halfway to 1 when messages fail (see `affinity_propagation`).
DAMPING_RETRIES = 2

Preference = Union[float, np.ndarray, None]


@dataclass
class APResult:
    exemplars: np.ndarray  # int64 [K], point indices, ascending
    labels: np.ndarray  # int64 [n], index into `exemplars`; an exemplar has its own cluster
    iterations: int  # message-passing iterations run (0 when the answer needed none)
    converged: bool
    # True when message passing failed (see `affinity_propagation`) and the result is a fallback.
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
    sampled: np.ndarray  # int64 [min(U, max_users)], users clustered by message passing, ascending
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


def _refine(similarity: np.ndarray, preferences: np.ndarray, exemplars: np.ndarray,
            labels: np.ndarray) -> np.ndarray:
    """Re-chooses each cluster's exemplar as the member with the largest in-cluster similarity sum."""
    refined = np.empty_like(exemplars)
    for cluster in range(exemplars.shape[0]):
        members = np.flatnonzero(labels == cluster)
        block = similarity[np.ix_(members, members)].copy()
        block[np.diag_indices_from(block)] = preferences[members]
        refined[cluster] = members[int(np.argmax(block.sum(axis=0)))]
    return np.sort(refined)


def _all_equal_solution(preferences: np.ndarray, common: float) -> np.ndarray:
    """Exact optimum when every off-diagonal similarity equals `common`.

    The net similarity of an exemplar set E is n * common + sum_{k in E} (p_k - common), so the
    best set is every point whose preference beats `common`, or, when none does, the single
    point with the highest preference (ties go to the fewer clusters and the lowest index).
    """
    exemplars = np.flatnonzero(preferences > common)
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


def _pass_messages(noisy: np.ndarray, damping: float, max_iter: int, convergence_iter: int):
    """Runs the damped updates on `noisy` (preferences on its diagonal): (exemplar mask, iterations, converged)."""
    n = noisy.shape[0]
    rows = np.arange(n)
    diagonal = np.diag_indices(n)
    keep, step = damping, 1.0 - damping
    responsibility = np.zeros_like(noisy)
    availability = np.zeros_like(noisy)
    scratch = np.empty_like(noisy)

    previous = np.zeros(n, dtype=bool)
    stable = 0
    iterations = 0
    for iterations in range(1, max_iter + 1):
        # Responsibilities: subtract the best competing a + s (the runner-up for the best one).
        np.add(availability, noisy, out=scratch)
        best_index = np.argmax(scratch, axis=1)
        best = scratch[rows, best_index]
        scratch[rows, best_index] = -np.inf
        runner_up = np.max(scratch, axis=1)
        np.subtract(noisy, best[:, None], out=scratch)
        scratch[rows, best_index] = noisy[rows, best_index] - runner_up
        responsibility *= keep
        scratch *= step
        responsibility += scratch

        # Availabilities: positive support from the other points, plus r(k, k) off the diagonal.
        np.maximum(responsibility, 0.0, out=scratch)
        scratch[diagonal] = responsibility[diagonal]
        support = scratch.sum(axis=0)
        np.subtract(support[None, :], scratch, out=scratch)
        self_availability = scratch[diagonal].copy()
        np.minimum(scratch, 0.0, out=scratch)
        scratch[diagonal] = self_availability
        availability *= keep
        scratch *= step
        availability += scratch

        current = (availability[diagonal] + responsibility[diagonal]) > 0
        stable = stable + 1 if np.array_equal(current, previous) else 1
        previous = current
        if stable >= convergence_iter and current.any():
            return current, iterations, True
    return previous, iterations, False


def affinity_propagation(similarity: np.ndarray, preference: Preference = None, damping: float = 0.7,
                         max_iter: int = 300, convergence_iter: int = 15,
                         seed: Optional[int] = 0) -> APResult:
    """Clusters n points given their pairwise similarities (larger = more alike).

    `similarity[i, k]` says how well k would serve as i's exemplar; it need not be symmetric, and
    its diagonal is ignored: `preference` (a scalar, or one value per point; default the median
    of the off-diagonal similarities) takes its place. `damping` is the weight kept from the
    previous message, in [0.5, 1). Message passing stops once the exemplar set is non-empty and
    unchanged for `convergence_iter` iterations, or after `max_iter` iterations
    (`converged=False`). `seed` drives the tiny perturbation that breaks ties; equal seeds give
    equal results.

    Messages can oscillate (typically when the preference is far below the similarities: the
    exemplar set then flips between none and everyone). A run that ends with no exemplar, or with
    a net similarity below that of the best single cluster or of every point on its own, is
    repeated with damping moved halfway to 1, up to `DAMPING_RETRIES` times, with `max_iter`
    and `convergence_iter` stretched to match the slower messages (by 2 per retry, or by
    0.5 / (1 - damping) if more); `damping` in the result is the one that produced it and
    `iterations` counts every run. If all runs fail, the result is a fallback, flagged with
    `fallback=True` and explained in `note`: one cluster around the point with the highest
    preference when no run found an exemplar, otherwise the better of the two trivial solutions.
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
        exemplars = _all_equal_solution(preferences, float(np.mean(off_diagonal)))
        return APResult(exemplars, _assign(similarity, exemplars), 0, True, damping=damping,
                        note="all off-diagonal similarities are equal: solved exactly")
    del off_diagonal

    noisy = np.empty_like(similarity)
    np.random.default_rng(seed).standard_normal(out=noisy)
    noisy *= NOISE_SCALE * magnitude
    diagonal_noise = noisy.diagonal().copy()
    noisy += similarity
    noisy[np.diag_indices(n)] = preferences + diagonal_noise

    (single_net, single), (alone_net, alone) = _trivial_solutions(similarity, preferences)
    floor = max(single_net, alone_net)
    tolerance = 1e-9 * (abs(floor) + 1.0)
    total_iterations = 0
    found_any = False  # whether some run ended with at least one exemplar
    for attempt in range(DAMPING_RETRIES + 1):
        # Messages move (1 - damping) of the way per iteration: a retry gets the iterations a run
        # at the first damping, or at 0.5 (where the usual convergence_iter is calibrated), had.
        scale = 1.0 if attempt == 0 else max(2.0 ** attempt, 0.5 / (1.0 - damping))
        mask, iterations, converged = _pass_messages(noisy, damping, math.ceil(max_iter * scale),
                                                     math.ceil(convergence_iter * scale))
        total_iterations += iterations
        if mask.any():
            exemplars = np.flatnonzero(mask).astype(np.int64)
            exemplars = _refine(similarity, preferences, exemplars, _assign(similarity, exemplars))
            labels = _assign(similarity, exemplars)
            net = _net_similarity(similarity, preferences, exemplars, labels)
            if net >= floor - tolerance:
                note = "" if attempt == 0 else f"retried with damping {damping:g} after a failed run"
                return APResult(exemplars, labels, total_iterations, converged, damping=damping, note=note)
            found_any = True
        if attempt < DAMPING_RETRIES:
            damping = 1.0 - (1.0 - damping) / 2.0

    if not found_any:
        exemplars = np.array([int(np.argmax(preferences))], dtype=np.int64)
        return APResult(exemplars, _assign(similarity, exemplars), total_iterations, False, fallback=True,
                        damping=damping, note="message passing found no exemplar; one cluster around "
                                              "the point with the highest preference")
    exemplars = single if single_net >= alone_net else alone
    return APResult(exemplars, _assign(similarity, exemplars), total_iterations, False, fallback=True,
                    damping=damping, note="message passing only found solutions worse than a trivial one; "
                                          + ("one cluster" if exemplars.size == 1 else "every point on its own"))


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
    used as is). With U <= max_users every user is clustered by Affinity Propagation; otherwise a
    seeded uniform sample of max_users users is, and every user is then assigned to its most
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
