"""Money as people read it: ``$3.31``, ``$0.000033``, ``<$0.000001``; never ``3.31e-05``.

One rule for the report, the notebooks and the CLI, so a cost reads the same everywhere:

* a dollar or more: cents, with thousands separators (``$3.31``, ``$1,204.50``);
* under a dollar: two significant digits, at most six decimals (``$0.42``,
  ``$0.0012``, ``$0.000033``); at least two decimals, so cents still look like cents;
* above zero but under a millionth of a dollar (what six decimals cannot show):
  ``<$0.000001``, never a misleading ``$0``;
* zero: ``$0``; a negative amount (a refund, a correction) takes a leading minus.
"""

from __future__ import annotations

import math

SMALLEST = 1e-6  # six decimals: the finest amount printed as a number


def usd(amount: float) -> str:
    """``amount`` US dollars as text, by the module's rule."""
    if not math.isfinite(amount):
        return f"${amount}"
    if amount < 0:
        return "-" + usd(-amount)
    if amount == 0:
        return "$0"
    if amount >= 1:
        return f"${amount:,.2f}"
    rounded = float(f"{amount:.2g}")  # two significant digits; 0.0099999 becomes 0.01
    if rounded < SMALLEST:
        return f"<${SMALLEST:.6f}"
    decimals = min(6, max(2, 1 - math.floor(math.log10(rounded))))
    return f"${rounded:.{decimals}f}"
