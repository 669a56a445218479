"""Numbers -> English words: a sequence-to-sequence task whose every answer code can generate exactly.

"123045" -> "one hundred twenty three thousand forty five" (no hyphens or "and", so each word is a token).
"""

from __future__ import annotations

import random

# fmt: off
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
# fmt: on
MAX_NUMBER = 999_999


def _below_thousand(n: int) -> list[str]:
    words = [ONES[n // 100], "hundred"] if n >= 100 else []
    n %= 100
    if n >= 20:
        words += [TENS[n // 10]] + ([ONES[n % 10]] if n % 10 else [])
    elif n or not words:
        words.append(ONES[n])
    return words


def to_words(n: int) -> str:
    """0 <= n <= 999,999 in English words."""
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"{n} is outside 0..{MAX_NUMBER}")
    thousands, rest = divmod(n, 1000)
    words = (_below_thousand(thousands) + ["thousand"]) if thousands else []
    if rest or not words:
        words += _below_thousand(rest)
    return " ".join(words)


def sample_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` distinct numbers, their digit count drawn uniformly (so short numbers are not rare), with words."""
    rng, seen = random.Random(seed), set()
    while len(seen) < count:
        digits = rng.randint(1, len(str(MAX_NUMBER)))
        seen.add(rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1))
    return [(str(n), to_words(n)) for n in sorted(seen)]
