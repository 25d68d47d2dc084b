"""Generic statistics of the report: intervals, the hierarchical bootstrap, curves' areas and survival.

Nothing here knows what a finding is; `report.estimands` defines the quantities and calls these. The
quantiles, Wilson intervals, Holm adjustment, Kaplan-Meier estimates and Cox regressions come from
scipy and statsmodels rather than hand-typed tables.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as sps

LEVEL = 0.95
# A Cox log hazard ratio beyond this is taken as complete separation, not an estimate.
MAX_LOG_HR = 8.0


def rng_for(seed: int, key: Any) -> np.random.Generator:
    """A generator of its own per (seed, key), so adding a table or a cell never shifts another's draws."""
    return np.random.default_rng([seed, zlib.crc32(repr(key).encode())])


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student t quantile (scipy's `stdtrit`, the ufunc behind `scipy.stats.t.ppf`)."""
    return (
        float(special.stdtrit(df, 0.5 + level / 2))
        if np.isfinite(df)
        else float(special.ndtri(0.5 + level / 2))
    )


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and t-interval of a few values, e.g. one estimate per pretraining seed (NaN bounds for
    fewer than two values)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, math.nan, math.nan)
    half = t_quantile(len(x) - 1, level) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return (mean, mean - half, mean + half)


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Welch t-interval of mean(a) - mean(b) (scipy), the floor a small-sample bootstrap must not go under."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return (math.nan, math.nan)
    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return (float(ci.low), float(ci.high))


def expanded_interval(
    boot: np.ndarray, n: int, point: float | None = None, level: float = LEVEL, df: float | None = None
) -> tuple[float, float]:
    """Interval from bootstrap replicates of a statistic of `n` items (the smallest group resampled).

    The expanded percentile interval (Hesterberg 2015: tail probability Phi(-sqrt(n/(n-1)) t_{n-1}))
    corrects the plain percentile interval's narrowness in small samples, but for n <= 4 its tail is
    so small that it becomes the replicates' min-max, narrower than a t-interval. So the result is
    never narrower than point +- t_{n-1} * sd(replicates) * sqrt(n/(n-1)): for a mean (or a
    difference of means) that is the Student (Welch, at the smallest arm's degrees of freedom)
    interval. `df` (default n - 1) replaces the t quantile's degrees of freedom where fewer units
    than items vary, e.g. a few pretraining seeds (`Resamples.df`). Non-finite replicates (a resample
    that drew no item of some arm) are left out."""
    b = np.asarray(boot, dtype=float)
    b = b[np.isfinite(b)]
    if n < 2 or len(b) < 2:
        return (math.nan, math.nan)
    tq = t_quantile(min(n - 1, df) if df is not None else n - 1, level)
    tail = float(special.ndtr(-math.sqrt(n / (n - 1)) * tq))
    lo, hi = np.quantile(b, [tail, 1 - tail])
    centre = float(b.mean()) if point is None or not np.isfinite(point) else float(point)
    half = tq * float(b.std(ddof=1)) * math.sqrt(n / (n - 1))
    return (float(min(lo, centre - half)), float(max(hi, centre + half)))


def bootstrap_p(boot: np.ndarray, point: float, n: int, df: float | None = None) -> float:
    """Two-sided p-value of "the statistic is 0" from its replicates, matching `expanded_interval`: the
    larger of the t-approximation's (sd of the replicates, n - 1 degrees of freedom, the same
    small-sample factor) and the percentile bootstrap's, so an interval that excludes zero and a
    p-value below 0.05 say the same thing up to resampling noise."""
    b = np.asarray(boot, dtype=float)
    b = b[np.isfinite(b)]
    if n < 2 or len(b) < 2 or not np.isfinite(point):
        return math.nan
    se = float(b.std(ddof=1)) * math.sqrt(n / (n - 1))
    dof = min(n - 1, df) if df is not None else n - 1
    p_t = 1.0 if se == 0 else float(2 * special.stdtr(dof, -abs(point) / se))
    if se == 0 and point != 0:
        p_t = 0.0
    p_perc = float(min(1.0, 2 * min((b <= 0).mean(), (b >= 0).mean())))
    return max(p_t, p_perc)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels `multipletests`); NaN stays NaN and is not counted."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def wilson(k: float, n: float, level: float = LEVEL) -> tuple[float, float]:
    """Wilson interval of a proportion k/n (statsmodels); NaN for n = 0: the band of an accuracy curve."""
    lo, hi = wilson_arrays(np.asarray([k], dtype=float), np.asarray([n], dtype=float), level)
    return (float(lo[0]), float(hi[0]))


def wilson_arrays(k: np.ndarray, n: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """`wilson` for arrays of counts."""
    from statsmodels.stats.proportion import proportion_confint

    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    lo, hi = np.full(len(n), np.nan), np.full(len(n), np.nan)
    ok = n > 0
    if ok.any():
        lo[ok], hi[ok] = proportion_confint(k[ok], n[ok], alpha=1 - level, method="wilson")
    return np.clip(lo, 0, 1), np.clip(hi, 0, 1)


# ------------------------------------------------------------------------------ hierarchical bootstrap


def _codes(*labels: Sequence[Any]) -> np.ndarray:
    """One integer code per distinct tuple of labels (any types)."""
    import pandas as pd

    combined = np.zeros(len(labels[0]), dtype=np.int64)
    for lab in labels:
        arr = np.asarray(lab)
        if arr.dtype.kind in "iub":
            code = np.unique(arr, return_inverse=True)[1].reshape(-1)
        else:
            code = pd.factorize(arr.astype(object))[0]
        combined = combined * (int(code.max(initial=0)) + 1) + code
    return np.unique(combined, return_inverse=True)[1].reshape(-1)


def _within(parent: np.ndarray, child: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[replicate, row] how often each row's `child` unit was drawn when every parent's children are
    resampled with replacement (a parent with one child always keeps it). `parent` and `child` are
    integer codes (`_codes`)."""
    pair = parent.astype(np.int64) * (int(child.max(initial=0)) + 1) + child
    pairs, inv = np.unique(pair, return_inverse=True)
    inv = inv.reshape(-1)
    par_of = pairs // (int(child.max(initial=0)) + 1)
    _, par_idx, sizes = np.unique(par_of, return_inverse=True, return_counts=True)
    par_idx = par_idx.reshape(-1)
    counts = np.ones((n_boot, len(pairs)))
    # Children sorted by parent: parent j's children sit at offsets[j] .. offsets[j] + sizes[j].
    order = np.argsort(par_idx, kind="stable")
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    for m in np.unique(sizes):
        if m == 1:
            continue
        parents = np.flatnonzero(sizes == m)
        # Draw m children with replacement per parent and replicate, and count them.
        draws = rng.integers(0, m, size=(n_boot, len(parents), m))
        flat = (
            np.arange(n_boot)[:, None, None] * len(parents) + np.arange(len(parents))[None, :, None]
        ) * m + draws
        got = np.bincount(flat.ravel(), minlength=n_boot * len(parents) * m).reshape(n_boot, len(parents) * m)
        cols = order[(offsets[parents][:, None] + np.arange(m)[None, :]).ravel()]
        counts[:, cols] = got
    return counts[:, inv]


@dataclass
class Resamples:
    """Bootstrap weights of the rows of one comparison, one block per level of the design.

    `weights[0]` is all ones (the point estimate); each block in `parts` resamples one level (worlds,
    then seeds within worlds, people within their world and stratum, items within people) with the
    other levels held as observed. `combine` turns a statistic computed on every row of `weights` into
    replicates theta + sum over levels of c * (theta_level - theta), whose variance is the sum of the
    levels' one-level bootstrap variances. (Multiplying the levels' draw counts instead, the pigeonhole
    bootstrap, weights the lower levels by how unevenly the few seeds were drawn and overstates their
    variance by up to 2x.) c = sqrt(k / (k - 1)) at the seed and world levels, whose few units (k) a
    bootstrap otherwise under-spreads. Seeds and people are crossed, and each level's variance holds
    the item noise once more: conservative where seeds barely differ. Worlds are nested: resampling
    them re-draws everything inside, so the world level adds only its variance beyond the within-world
    levels' (the ANOVA moment estimate, never below 0). A level with one unit does not vary and the
    interval holds it fixed, which the reported n says. Each level's variance has its units minus its
    parents' as degrees of freedom; `df` combines them (Welch-Satterthwaite), so an interval that rests
    on three seeds uses a t quantile of few degrees of freedom."""

    weights: np.ndarray
    parts: list[tuple[str, slice, float, int]]
    n_boot: int

    def _components(self, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """Per level: (scaled deviations [n_boot, ...], their variance, degrees of freedom)."""
        point = x[0]
        out, nested = [], []
        for name, rows, c, dof in self.parts:
            d = c * (x[rows] - point)
            with warnings.catch_warnings():  # an all-NaN statistic (no estimate) has no variance
                warnings.simplefilter("ignore", RuntimeWarning)
                var = np.nanvar(d, axis=0) if len(d) > 1 else np.zeros(x.shape[1:])
            (nested if name == "worlds" else out).append((d, var, dof))
        within = sum((v for _, v, _ in out), np.zeros(x.shape[1:]))
        for d, var, dof in nested:
            extra = np.maximum(var - within, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                scale = np.where(var > 0, np.sqrt(extra / np.where(var > 0, var, 1.0)), 0.0)
            out.append((d * scale, extra, dof))
        return out

    def combine(self, x: np.ndarray) -> tuple[Any, np.ndarray]:
        """(point, [n_boot, ...] replicates) of a statistic given per row of `weights` (leading axis)."""
        x = np.asarray(x, dtype=float)
        dev = np.zeros((self.n_boot, *x.shape[1:]))
        for d, _, _ in self._components(x):
            dev = dev + d
        return x[0], x[0] + dev

    def df(self, x: np.ndarray) -> float:
        """Welch-Satterthwaite degrees of freedom of a (scalar) statistic's replicate variance."""
        comps = [(float(v), dof) for _, v, dof in self._components(np.asarray(x, dtype=float)) if dof > 0]
        total = sum(v for v, _ in comps)
        denom = sum(v * v / dof for v, dof in comps)
        return total * total / denom if denom > 0 else math.inf


def hierarchical_resamples(
    world: Sequence[Any],
    model: Sequence[Any],
    person: Sequence[Any],
    item: Sequence[Any],
    stratum: Sequence[Any],
    n_boot: int,
    rng: np.random.Generator,
) -> Resamples:
    """The bootstrap of one comparison over what varies: generated worlds (data seeds), models
    (pretraining seeds) within worlds, people within their world and `stratum` (the frequency level
    they were generated in, a fixed share of the design) and each person's items. Models and people
    are crossed (every model of a world unlearns the same people), so each is resampled on its own."""
    w = _codes(world)
    m = _codes(world, model)
    p = _codes(world, person)
    i = _codes(world, person, item)
    s = _codes(world, stratum)
    zero = np.zeros(len(w), dtype=int)
    blocks, parts, start = [np.ones((1, len(w)))], [], 1
    n_worlds = len(np.unique(w))
    seeds_per_world = min(len(np.unique(m[w == k])) for k in np.unique(w)) if len(w) else 1
    levels = [
        ("worlds", zero, w, n_worlds),
        ("seeds", w, m, seeds_per_world),
        ("people", s, p, 0),
        ("items", p, i, 0),
    ]
    for name, parent, child, k in levels:
        dof = len(np.unique(child)) - len(np.unique(parent))
        if dof == 0:
            continue  # one unit per parent: nothing to resample at this level
        blocks.append(_within(parent, child, n_boot, rng))
        parts.append((name, slice(start, start + n_boot), math.sqrt(k / (k - 1)) if k >= 2 else 1.0, dof))
        start += n_boot
    return Resamples(np.vstack(blocks), parts, n_boot)


def weighted_means(weights: np.ndarray, values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """[replicate, group] weighted mean of `values` per group code (NaN where a group got no weight).
    `weights` may be a single row of ones for the point estimate."""
    ind = np.zeros((len(values), n_groups))
    ind[np.arange(len(values)), groups] = 1.0
    num = weights @ (ind * values[:, None])
    den = weights @ ind
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def batched_wls(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[replicate, coefficient] weighted least squares of y on the columns of x, one fit per row of
    `weights` (the bootstrap of a regression; pseudo-inverse where a resample left a column empty)."""
    p = x.shape[1]
    xtwx = (weights @ (x[:, :, None] * x[:, None, :]).reshape(len(x), p * p)).reshape(-1, p, p)
    xtwy = weights @ (x * y[:, None])
    return np.einsum("bij,bj->bi", np.linalg.pinv(xtwx), xtwy)


def slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of y on x along y's last axis (one slope per leading index)."""
    xc = np.asarray(x, dtype=float) - np.mean(x)
    y = np.asarray(y, dtype=float)
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


# ------------------------------------------------------------------------------------ curves and areas


def trapz_weights(steps: Sequence[float]) -> np.ndarray:
    """Weights w such that values @ w is the trapezoid area over sorted `steps` divided by the range."""
    s = np.asarray(steps, dtype=float)
    if len(s) == 1 or s[-1] == s[0]:
        return np.full(len(s), 1.0 / len(s))
    d = np.diff(s)
    w = np.zeros(len(s))
    w[:-1] += d / 2
    w[1:] += d / 2
    return w / (s[-1] - s[0])


def normalised_auc(steps: Sequence[float], values: Sequence[float]) -> float:
    """Area under a curve over the step budget, divided by the budget: the curve's mean level."""
    s = np.asarray(steps, dtype=float)
    if len(s) == 0:
        return math.nan
    order = np.argsort(s)
    return float(np.asarray(values, dtype=float)[order] @ trapz_weights(s[order]))


def steps_to_threshold(steps: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """First evaluated step at which the curve is at or below `threshold` (NaN if never: censored)."""
    for step, value in sorted(zip(steps, values)):
        if value <= threshold:
            return float(step)
    return math.nan


# ------------------------------------------------------------------------------------------- survival


def kaplan_meier(times: Sequence[float], observed: Sequence[bool]) -> list[tuple[float, float]]:
    """Kaplan-Meier survival (statsmodels `SurvfuncRight`): (time, S(time)) at each observed event time.
    Censored units count as at risk up to their last step and are never given an invented time."""
    t, e = np.asarray(times, dtype=float), np.asarray(observed, dtype=bool)
    if not e.any():
        return []
    from statsmodels.duration.survfunc import SurvfuncRight

    sf = SurvfuncRight(t, e.astype(float))
    return [(float(a), float(b)) for a, b in zip(sf.surv_times, sf.surv_prob)]


def km_table(times: Sequence[float], observed: Sequence[bool]) -> dict[str, np.ndarray]:
    """Kaplan-Meier curve with Greenwood standard errors and at-risk counts, from time 0."""
    t, e = np.asarray(times, dtype=float), np.asarray(observed, dtype=bool)
    if not e.any():
        return {
            "time": np.array([0.0]),
            "surv": np.array([1.0]),
            "se": np.array([0.0]),
            "at_risk": np.array([len(t)]),
        }
    from statsmodels.duration.survfunc import SurvfuncRight

    sf = SurvfuncRight(t, e.astype(float))
    return {
        "time": np.r_[0.0, sf.surv_times],
        "surv": np.r_[1.0, sf.surv_prob],
        "se": np.r_[0.0, sf.surv_prob_se],
        "at_risk": np.r_[len(t), sf.n_risk],
    }


def km_median(times: Sequence[float], observed: Sequence[bool]) -> float:
    """First time at which the Kaplan-Meier survival falls to 0.5 or below (NaN: not reached)."""
    return next((time for time, s in kaplan_meier(times, observed) if s <= 0.5), math.nan)


def hazard_ratio(
    times: np.ndarray,
    observed: np.ndarray,
    exposed: np.ndarray,
    strata: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    level: float = LEVEL,
) -> dict[str, float]:
    """Cox proportional-hazards ratio of `exposed` (statsmodels `PHReg`, Breslow ties), stratified (a
    baseline hazard per model) and with a cluster-robust (sandwich) interval over `clusters` (people,
    whose items are unlearned by several models). NaN when there is no event or no contrast."""
    nan = {"hr": math.nan, "hr_lo": math.nan, "hr_hi": math.nan, "p": math.nan}
    e = np.asarray(observed, dtype=bool)
    x = np.asarray(exposed, dtype=float)
    if e.sum() == 0 or len(np.unique(x)) < 2 or e[x == 1].sum() + e[x == 0].sum() < 2:
        return nan
    from statsmodels.duration.hazard_regression import PHReg

    groups = None if clusters is None else _codes(clusters)
    strata_codes = None if strata is None else _codes(strata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = PHReg(
                np.asarray(times, float), x[:, None], status=e.astype(float), strata=strata_codes
            ).fit(groups=groups)
        except (np.linalg.LinAlgError, ValueError):
            return nan
    beta, se = float(fit.params[0]), float(fit.bse[0])
    # |log HR| beyond MAX_LOG_HR means the levels' loss times barely overlap (complete separation):
    # the partial likelihood has no finite maximum and its "estimate" is where the optimiser stopped.
    if not (np.isfinite(beta) and np.isfinite(se)) or se == 0 or abs(beta) > MAX_LOG_HR:
        return nan
    z = float(sps.norm.ppf(0.5 + level / 2))
    return {
        "hr": math.exp(beta),
        "hr_lo": math.exp(beta - z * se),
        "hr_hi": math.exp(beta + z * se),
        "p": float(2 * sps.norm.sf(abs(beta) / se)),
    }
