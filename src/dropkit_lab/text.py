"""Words for numbers in messages (torch-free): plurals and durations with their uncertainty."""

from __future__ import annotations

__all__ = ["duration", "plural"]


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``"1 run"``, ``"2 runs"`` (``nouns``: the plural where it is not ``noun + "s"``)."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


_UNITS = ((60, 1, "s"), (3600, 60, "min"), (48 * 3600, 3600, "h"), (float("inf"), 86400, "days"))


def duration(seconds: float, error: float | None = None) -> str:
    """``"~5 min ± 1"``: ``seconds`` and its uncertainty ``error`` in one unit (s, min, h, days),
    rounded to what the uncertainty allows; without ``error`` just ``"~5 min"``."""
    seconds = max(float(seconds), 0.0)
    size, unit = next((size, unit) for limit, size, unit in _UNITS if seconds < limit)
    value = seconds / size
    digits = 1 if unit == "h" else 0
    text = f"~{max(value, 1.0 if unit == 's' else 0.0):.{digits}f} {unit}"
    if error is None:
        return text
    err = float(error) / size
    err_text = f"{err:.{digits}f}"
    if float(err_text) == 0:  # less than the last digit shown
        err_text = "<1" if digits == 0 else "<0.1"
    return f"{text} ± {err_text}"
