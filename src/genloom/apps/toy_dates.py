"""Dates written many ways, paired with their ISO form: a translation task the package makes itself.

    >>> import random
    >>> pair(random.Random(0))  # doctest: +SKIP
    ('the 14th of June 1997', '1997-06-14')
"""

from __future__ import annotations

import calendar
import datetime
import random

MONTHS = list(calendar.month_name)[1:]
ORDINAL = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}


def _ordinal(day: int) -> str:
    return f"{day}{ORDINAL.get(day, 'th')}"


FORMATS = [
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{calendar.day_name[d.weekday()]}, {MONTHS[d.month - 1]} {_ordinal(d.day)} {d.year}",
    lambda d: f"{d.day}-{MONTHS[d.month - 1][:3]}-{d.year}",
]


def pair(rng: random.Random) -> tuple[str, str]:
    """One (written date, ISO date) pair between 1950 and 2049."""
    start = datetime.date(1950, 1, 1).toordinal()
    date = datetime.date.fromordinal(start + rng.randrange(36524))
    text = rng.choice(FORMATS)(date)
    return (text.lower() if rng.random() < 0.3 else text), date.isoformat()


def pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [pair(rng) for _ in range(n)]
