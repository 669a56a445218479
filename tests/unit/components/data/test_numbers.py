"""Numbers spelled out in words (the seq2seq task's data)."""

from __future__ import annotations

from components.data.numbers import to_words


def test_numbers_to_words() -> None:
    assert to_words(0) == "zero"
    assert to_words(115) == "one hundred fifteen"
    assert to_words(120_045) == "one hundred twenty thousand forty five"
    assert to_words(999_999) == "nine hundred ninety nine thousand nine hundred ninety nine"
