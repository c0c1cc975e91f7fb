"""Bjøntegaard delta rate (BD-rate): the average bitrate difference at equal quality.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves",
VCEG-M33 (2001); the piecewise cubic variant is the one in JVET's CTC sheets.

Each rate–quality curve is turned into a function ``log10(rate) = f(quality)``;
the two functions are integrated over the quality range both curves cover, and
the mean difference of the log-rates gives::

    BD-rate = (10 ** (mean(f_test - f_anchor)) - 1) * 100  [%]

Negative means the test curve needs fewer bits for the same quality. The sign
of the quality axis does not matter (the integral is over quality), so it works
for PSNR (higher is better) and LPIPS (lower is better) alike, as long as
quality changes monotonically with rate along each curve.

Two fits:
- ``"pchip"`` (default): piecewise cubic Hermite interpolation (Fritsch–Carlson
  slopes, monotone, no overshoot), works with 2 or more points per curve;
- ``"polyfit"``: the original cubic least-squares fit (degree ``min(3, n - 1)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METHODS = ("pchip", "polyfit")


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson derivatives at the knots of a monotone cubic Hermite interpolant."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    slopes = np.zeros(n)
    if n == 2:
        slopes[:] = delta[0]
        return slopes
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:  # same sign: weighted harmonic mean
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            slopes[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    slopes[0] = _end_slope(h[0], h[1], delta[0], delta[1])
    slopes[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return slopes


def _end_slope(h0: float, h1: float, delta0: float, delta1: float) -> float:
    """One-sided three-point end slope, kept shape-preserving (as in SciPy's PCHIP)."""
    slope = ((2 * h0 + h1) * delta0 - h0 * delta1) / (h0 + h1)
    if np.sign(slope) != np.sign(delta0):
        return 0.0
    if np.sign(delta0) != np.sign(delta1) and abs(slope) > abs(3 * delta0):
        return 3 * delta0
    return slope


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Integral over [lo, hi] (inside [x0, xn]) of the PCHIP interpolant, exactly."""
    slopes = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        # Hermite cubic on [x_k, x_k+1] in t = (x - x_k) / h, as a polynomial in t.
        y0, y1, m0, m1 = y[k], y[k + 1], slopes[k] * h, slopes[k + 1] * h
        coeffs = np.array([  # c3 t^3 + c2 t^2 + c1 t + c0
            2 * y0 - 2 * y1 + m0 + m1,
            -3 * y0 + 3 * y1 - 2 * m0 - m1,
            m0,
            y0,
        ])
        antiderivative = np.polyint(coeffs)
        ta, tb = (a - x[k]) / h, (b - x[k]) / h
        total += h * (np.polyval(antiderivative, tb) - np.polyval(antiderivative, ta))
    return float(total)


def _curve(rates: Sequence[float], metric: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (metric, log10 rate) knots; clear errors for unusable curves."""
    rate_arr = np.asarray(rates, dtype=np.float64)
    metric_arr = np.asarray(metric, dtype=np.float64)
    if rate_arr.shape != metric_arr.shape or rate_arr.ndim != 1:
        raise ValueError(
            f"{name}: rates and metric values must be two lists of equal length, got "
            f"{rate_arr.shape} and {metric_arr.shape}"
        )
    if len(rate_arr) < 2:
        raise ValueError(f"{name}: BD-rate needs at least 2 rate points, got {len(rate_arr)}")
    if not np.all(np.isfinite(rate_arr)) or not np.all(np.isfinite(metric_arr)):
        raise ValueError(f"{name}: rates and metric values must be finite, got {rates}, {metric}")
    if np.any(rate_arr <= 0):
        raise ValueError(f"{name}: rates must be positive, got {list(rate_arr)}")
    order = np.argsort(metric_arr)
    metric_sorted, log_rate = metric_arr[order], np.log10(rate_arr[order])
    if np.any(np.diff(metric_sorted) == 0):
        raise ValueError(f"{name}: two rate points have the same metric value {list(metric_arr)}")
    return metric_sorted, log_rate


def bd_rate(
    anchor_rates: Sequence[float],
    anchor_metric: Sequence[float],
    test_rates: Sequence[float],
    test_metric: Sequence[float],
    method: str = "pchip",
) -> float:
    """BD-rate of the test curve against the anchor in percent (negative: test saves bits).

    ``*_rates`` are bitrates (bpp or kbps, any positive unit, the same for both);
    ``*_metric`` the quality at each rate (PSNR, LPIPS, ...). Returns NaN when the
    two curves share no quality range.
    """
    if method not in METHODS:
        raise ValueError(f"unknown BD-rate method {method!r}; choose one of {METHODS}")
    anchor_q, anchor_log_rate = _curve(anchor_rates, anchor_metric, "anchor")
    test_q, test_log_rate = _curve(test_rates, test_metric, "test")
    lo = max(anchor_q[0], test_q[0])
    hi = min(anchor_q[-1], test_q[-1])
    if hi <= lo:
        return math.nan
    if method == "pchip":
        anchor_area = _pchip_integral(anchor_q, anchor_log_rate, lo, hi)
        test_area = _pchip_integral(test_q, test_log_rate, lo, hi)
    else:
        areas = []
        for q, log_rate in ((anchor_q, anchor_log_rate), (test_q, test_log_rate)):
            poly = np.polyfit(q, log_rate, deg=min(3, len(q) - 1))
            antiderivative = np.polyint(poly)
            areas.append(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))
        anchor_area, test_area = areas
    mean_log_diff = (test_area - anchor_area) / (hi - lo)
    return float((10.0**mean_log_diff - 1.0) * 100.0)
