"""Money as integers: amounts are held in micro-units (1e-6 of the currency unit), never as floats.

Configs and the price table give decimals; they become integers once, here, through ``Decimal`` (a JSON float
such as 0.075 is read through its shortest repr, so it converts exactly). Arithmetic on costs is integer or
``Fraction`` arithmetic; floats appear only at the edges that require them (the Prometheus counter, the
``ai.proxy.usage.cost`` log field).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

MICRO = 1_000_000


def to_decimal(value: object) -> Decimal:
    """A config or table number as an exact Decimal (floats through their shortest repr)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount of money")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, (int, str)):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    raise TypeError(f"not a number: {value!r}")


def to_micros(value: object) -> int:
    """``value`` currency units as an integer count of micro-units (half a micro-unit rounds up)."""
    amount = to_decimal(value)
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return int((amount * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_fraction(value: object) -> Fraction:
    return Fraction(to_decimal(value))


def ceil_div(numerator: int | Fraction, denominator: int) -> int:
    """The smallest integer >= numerator / denominator (exact for ints and Fractions)."""
    if type(numerator) is int and type(denominator) is int:
        return -((-numerator) // denominator)
    quotient = Fraction(numerator) / denominator
    return -((-quotient.numerator) // quotient.denominator)


def format_money(micros: int, places: int = 2) -> str:
    """Micro-units as a decimal string with at least ``places`` decimals and no float rounding.

    ``format_money(10_000) == "0.01"``, ``format_money(1_234_567) == "1.234567"``, ``format_money(-5) ==
    "-0.000005"``.
    """
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(int(micros)), MICRO)
    digits = f"{fraction:06d}".rstrip("0")
    if len(digits) < places:
        digits = digits.ljust(places, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def as_float(micros: int) -> float:
    """For the edges that need a float (metrics, the analytics log line)."""
    return micros / MICRO
