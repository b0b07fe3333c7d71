"""Sizes as a person reads them: binary units labelled as such (KiB, MiB, GiB, TiB).

One function for every text a person reads (the confirmation form, the demo, the quota), so the form's
"1.6 GiB" is the quota's "1.6 GiB". Structured content carries bytes. The SCNet quota API answers in
"GB"; storage systems (ParaStor among them) count quota in units of 1024**3 bytes, so a quota "GB" is
taken as a GiB (`QUOTA_GB_BYTES`) and shown with that label.
"""

from __future__ import annotations

KIB = 1024
GIB = 1024**3
#: Bytes in one "GB" of the SCNet quota API (binary: see the module docstring).
QUOTA_GB_BYTES = GIB

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int | float) -> str:
    """`size` bytes as "512 B", "58.0 KiB", "1.6 GiB" (one decimal from KiB on)."""
    value = float(size)
    for unit in _UNITS:
        if abs(value) < KIB or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= KIB
    raise AssertionError("unreachable")  # pragma: no cover


def quota_bytes(gb: float) -> int:
    """A size of the quota API (its "GB") in bytes."""
    return round(gb * QUOTA_GB_BYTES)
