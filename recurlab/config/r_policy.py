"""The r policy: which iteration counts are offered by default, for sweeps and for the r sliders."""

from __future__ import annotations

# r values offered by default reach R_REACH x r_mean: past the training depth, where a model that
# cannot extrapolate in depth would show its collapse
R_REACH = 4


def default_rs(r_mean: int) -> list[int]:
    """The default r values of a sweep: powers of two up to R_REACH x r_mean."""
    rs = [1]
    while rs[-1] * 2 <= R_REACH * max(r_mean, 1):
        rs.append(rs[-1] * 2)
    return rs


def slider_max_r(r_mean: int) -> int:
    """The top of an r slider (Generate, Inspector): R_REACH x r_mean, at least 8."""
    return max(R_REACH * r_mean, 8)
