"""Money: the hourly price of the hardware, a candidate's cost over the horizon, and the one way
money is written. The verdict and the reports both use these, so they never disagree.

>>> [fmt_money(v) for v in (0, 0.0042, 0.021, 0.34, 3.5, 12345, float("nan"))]
['$0', '$0.0042', '$0.021', '$0.34', '$3.50', '$12,345', 'unpriced']
"""
from __future__ import annotations

import math

DEFAULT_HOURLY_USD = {"cpu": 0.10, "cuda": 2.50}  # a 2-vCPU cloud VM; one on-demand data-centre GPU


def hourly_price(constraints, device: str) -> float:
    """``constraints.hourly_price_usd``, or the default for the device."""
    if constraints.hourly_price_usd is not None:
        return constraints.hourly_price_usd
    return DEFAULT_HOURLY_USD["cuda" if device.startswith("cuda") else "cpu"]


def monthly_cost(cost_per_1k_usd: float, constraints) -> float:
    """Running cost of a month at ``constraints.queries_per_month``."""
    return cost_per_1k_usd * constraints.queries_per_month / 1000


def total_cost(candidate, constraints) -> float:
    """One-off cost plus running cost over ``constraints.horizon_months``: what the verdict compares."""
    return candidate.one_off_cost_usd + monthly_cost(candidate.cost_per_1k_usd, constraints) * constraints.horizon_months


def cost_rank(x: float) -> float:
    """A cost to rank by: an unpriced one (NaN: an endpoint without prices) is unknown, never
    cheaper than a priced one, and never free."""
    return math.inf if math.isnan(x) else x


def fmt_money(x: float | None) -> str:
    """Dollars with two significant digits below $1 (so $0.021 per 1,000 queries does not read as $0.02)."""
    if x is None:
        return "–"
    if isinstance(x, float) and math.isnan(x):
        return "unpriced"  # an endpoint without prices: unknown, never free
    if math.isinf(x):
        return "∞"
    if x == 0:
        return "$0"
    if abs(x) < 0.0001:
        return "<$0.0001" if x > 0 else f"-{fmt_money(-x)}"
    if abs(x) < 1:
        return f"${x:.{max(2, 1 - math.floor(math.log10(abs(x))))}f}"
    if abs(x) < 1000:
        return f"${x:,.2f}"
    return f"${x:,.0f}"
