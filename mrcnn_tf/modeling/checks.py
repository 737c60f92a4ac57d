"""Argument checks of the Keras layers: a ValueError naming the argument and its value."""


def check_positive_int(value, name):
    """``value`` as an int >= 1, or a ValueError naming ``name``."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_fraction(value, name, low=0.0, high=1.0):
    """``value`` as a float in [low, high], or a ValueError naming ``name``."""
    value = float(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


def check_std_dev(value, name):
    """Four positive floats (box delta scaling), or a ValueError naming ``name``."""
    value = tuple(float(v) for v in value)
    if len(value) != 4 or min(value) <= 0:
        raise ValueError(f"{name} must be 4 positive numbers, got {value!r}")
    return value


def check_choice(value, choices, name):
    """``value`` if it is one of ``choices``, or a ValueError naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
