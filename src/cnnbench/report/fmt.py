"""Numbers for people: durations with units, percentages that never round to a lie, separators."""

from __future__ import annotations

import math


def _finite(value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, no exponent for everyday magnitudes."""
    if value == 0:
        return "0"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    text = f"{value:,.{decimals}f}"
    # 9.996 with 3 digits rounds up to "10.00": drop the spurious extra decimal
    if decimals > 0 and len(text.replace(",", "").replace(".", "").lstrip("-0")) > digits:
        text = f"{value:,.{decimals - 1}f}"
    return text


def duration(seconds, digits: int = 3) -> str:
    """1.5e-4 -> '150 µs', 0.0123 -> '12.3 ms', 2.5 -> '2.50 s', 125 -> '2 min 05 s'."""
    value = _finite(seconds)
    if value is None:
        return "–"
    if value < 0:
        return "−" + duration(-value, digits)
    if value == 0:
        return "0 s"
    if value < 60:
        value = float(f"{value:.{digits}g}")  # 0.99996 ms must read "1.00 ms", not "1,000 µs"
    if value < 1e-6:
        return f"{sig(value * 1e9, digits)} ns"
    if value < 1e-3:
        return f"{sig(value * 1e6, digits)} µs"
    if value < 1:
        return f"{sig(value * 1e3, digits)} ms"
    if value < 60:
        return f"{sig(value, digits)} s"
    total = round(value)
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def integer(value) -> str:
    """10000 -> '10,000'."""
    number = _finite(value)
    if number is None:
        return "–"
    return f"{round(number):,}"


def percent(fraction, decimals: int = 2) -> str:
    """0.9912 -> '99.12 %'. Never shows '100 %' unless exact, nor '0 %' unless exactly zero."""
    value = _finite(fraction)
    if value is None:
        return "–"
    text = f"{value * 100:.{decimals}f}"
    limit = 10.0**-decimals
    if value < 1 and float(text) >= 100:
        return f"> {100 - limit:.{decimals}f} %"
    if value > 0 and float(text) == 0:
        return f"< {limit:.{decimals}f} %"
    if value == 1:
        return "100 %"
    return f"{text} %"


def scientific(value, digits: int = 2) -> str:
    """3.14e-07 -> '3.1e-07'; 0 -> '0'."""
    number = _finite(value)
    if number is None:
        return "–"
    if number == 0:
        return "0"
    return f"{number:.{digits - 1}e}"


def rate(value) -> str:
    """Images per second: '1,234 /s', '12.3 /s'."""
    number = _finite(value)
    if number is None:
        return "–"
    return f"{sig(number, 3)} /s" if number < 1000 else f"{round(number):,} /s"


def megabytes(value) -> str:
    number = _finite(value)
    if number is None:
        return "–"
    if number >= 1024:
        return f"{sig(number / 1024, 3)} GB"
    return f"{sig(number, 3)} MB"


def kibibytes(count) -> str:
    """A size in bytes, binary units as caches are sized: 32768 -> '32 KiB', 2**25 -> '32 MiB'."""
    number = _finite(count)
    if number is None:
        return "–"
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if number >= scale:
            return f"{sig(number / scale, 3)} {unit}"
    return f"{number:.0f} B"


def speedup(reference_s, backend_s) -> str:
    """How much faster than the reference: '3.2× faster', '48× slower', '1.00× (same)'."""
    ref, own = _finite(reference_s), _finite(backend_s)
    if ref is None or own is None or ref <= 0 or own <= 0:
        return "–"
    ratio = ref / own
    if math.isclose(ratio, 1.0, rel_tol=5e-3):
        return "1.00× (same)"
    if ratio > 1:
        return f"{sig(ratio, 3)}× faster"
    return f"{sig(1 / ratio, 3)}× slower"


def ratio(value) -> str:
    number = _finite(value)
    if number is None:
        return "–"
    return f"{sig(number, 3)}×"


def count(value) -> str:
    """Large counts for axes and tables: 1234 -> '1.23 k', 5.3e6 -> '5.30 M', 2e9 -> '2.00 G'."""
    number = _finite(value)
    if number is None:
        return "–"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= limit:
            return f"{sig(number / limit, 3)} {suffix}"
    return sig(number, 3)


def share(fraction) -> str:
    """A spread as a share of its median, two significant digits: 0.034 -> '3.4 %'."""
    value = _finite(fraction)
    return "–" if value is None else f"{sig(100 * value, 2)} %"


def ratio_interval(value, low, high) -> str:
    """A ratio and its confidence interval: '1.37× [1.35–1.39]'."""
    if _finite(low) is None or _finite(high) is None:
        return ratio(value)
    return f"{ratio(value)} [{sig(low, 3)}–{sig(high, 3)}]"
