"""Errors the workbench raises for bad input, before anything starts."""

from __future__ import annotations

from collections.abc import Iterable


class InputError(ValueError):
    """Bad input: names the parameter and what is allowed."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.reason = message
        super().__init__(f"{name}: {message}")


class StackError(RuntimeError):
    """A server of the stack could not start, be reached or be stopped."""


def allowed(values: Iterable[object]) -> str:
    """Format a list of allowed values for an error message."""
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


def positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Return value as an int >= minimum, or raise InputError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise InputError(name, f"must be an integer >= {minimum}, got {value!r}") from None
    assert isinstance(value, int)
    if value < minimum:
        raise InputError(name, f"must be an integer >= {minimum}, got {value}")
    return value


def positive_float(name: str, value: object, *, minimum: float = 0.0, strict: bool = True) -> float:
    """Return value as a float > minimum (>= when strict=False), or raise InputError naming it."""
    if isinstance(value, bool):
        raise InputError(name, f"must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(name, f"must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InputError(name, f"must be a finite number, got {value!r}")
    if (strict and number <= minimum) or (not strict and number < minimum):
        op = ">" if strict else ">="
        raise InputError(name, f"must be a number {op} {minimum:g}, got {value!r}")
    return number
