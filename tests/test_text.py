"""Sentence splitting of streamed LLM text, and cleaning text before speech."""

from __future__ import annotations

import random

import pytest

from pipeline.text import SentenceSplitter, clean_for_speech


def tokens(text: str, seed: int = 0) -> list[str]:
    """Split text into 1-3 character pieces, like an LLM stream."""
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(text):
        n = rng.randint(1, 3)
        pieces.append(text[i : i + n])
        i += n
    return pieces


def stream(pieces: list[str], min_chars: int = 12) -> tuple[list[tuple[int, str]], list[str]]:
    """Feed pieces; return (characters fed so far when emitted, sentence) and the flush."""
    splitter = SentenceSplitter(min_chars)
    out, fed = [], 0
    for piece in pieces:
        fed += len(piece)
        out += [(fed, s) for s in splitter.push(piece)]
    return out, splitter.flush()


REPLY = (
    "Sure, I can help with that. Dr. Smith is here today. "
    "The large pizza costs 12.50 dollars. Would you like extra cheese? "
    "It is really good! Anything else for you"
)
SENTENCES = [
    "Sure, I can help with that.",
    "Dr. Smith is here today.",
    "The large pizza costs 12.50 dollars.",
    "Would you like extra cheese?",
    "It is really good!",
]


@pytest.mark.parametrize("seed", range(5))
def test_token_stream_gives_whole_sentences_then_the_remainder(seed):
    emitted, rest = stream(tokens(REPLY, seed))
    assert [s for _, s in emitted] == SENTENCES
    assert rest == ["Anything else for you"]


def test_sentence_comes_out_when_the_following_whitespace_arrives():
    text = "Sure, I can help with that. Dr. Smith is here today. "
    emitted, _ = stream(list(text))  # one character at a time
    # Each sentence appears exactly when the space after its final "." is fed, not later.
    first_end = text.index("that.") + len("that. ")
    second_end = text.index("today.") + len("today. ")
    assert emitted == [(first_end, SENTENCES[0]), (second_end, SENTENCES[1])]


def test_no_sentence_before_the_whitespace():
    splitter = SentenceSplitter()
    assert splitter.push("I can help with that.") == []  # could still be "that.5"
    assert splitter.push(" ") == ["I can help with that."]


@pytest.mark.parametrize(
    "text",
    [
        "Dr. Smith is here.",
        "It costs 3.50 dollars.",
        "Mr. and Mrs. Jones vs. the city.",
        "Your appointment with Dr. Smith is at noon.",  # "...with Dr." is long enough to emit
    ],
)
@pytest.mark.parametrize("min_chars", [12, 0])  # 0: only the abbreviation rule can hold it
def test_abbreviations_and_decimals_are_not_split(text, min_chars):
    for seed in range(3):
        emitted, rest = stream(tokens(text + " And then some more words.", seed), min_chars)
        assert [s for _, s in emitted] == [text]
        assert rest == ["And then some more words."]


def test_decimal_split_across_tokens_is_not_split():
    splitter = SentenceSplitter()
    assert splitter.push("It costs 3.") == []
    assert splitter.push("50 dollars.") == []
    assert splitter.push(" ") == ["It costs 3.50 dollars."]


def test_short_fragments_are_merged_into_the_next_sentence():
    emitted, rest = stream(tokens("Okay. Sure. Let me check that for you. Done"))
    assert [s for _, s in emitted] == ["Okay. Sure. Let me check that for you."]
    assert rest == ["Done"]


def test_min_chars_zero_emits_short_sentences():
    emitted, _ = stream(list("Okay. Sure. "), min_chars=0)
    assert [s for _, s in emitted] == ["Okay.", "Sure."]


def test_question_exclamation_and_newline_split():
    text = "Can you hear me well? That is wonderful news!\nHere is the first line\nAnd the end"
    emitted, rest = stream(list(text))
    assert [s for _, s in emitted] == [
        "Can you hear me well?",
        "That is wonderful news!",
        "Here is the first line",
    ]
    assert rest == ["And the end"]


def test_flush_returns_remainder_once():
    splitter = SentenceSplitter()
    assert splitter.push("Let me think about") == []
    assert splitter.flush() == ["Let me think about"]
    assert splitter.flush() == []
    assert splitter.push("   ") == []
    assert splitter.flush() == []  # whitespace only is nothing to say


def test_flush_returns_short_fragment_held_back_by_min_chars():
    splitter = SentenceSplitter()
    assert splitter.push("Yes. ") == []
    assert splitter.flush() == ["Yes."]


@pytest.mark.parametrize(
    ("markdown", "spoken"),
    [
        ("This is **very** important.", "This is very important."),
        ("Run `pip install foo` now.", "Run pip install foo now."),
        ("See [the docs](https://example.com/docs) for more.", "See the docs for more."),
        ("## Opening hours\nWe open at nine.", "Opening hours We open at nine."),
        ("Toppings:\n- cheese\n- ham\n* olives", "Toppings: cheese ham olives"),
        ("Enjoy your pizza! 🍕😀", "Enjoy your pizza!"),
        ("Thanks ❤️ see you 👍🏽 soon", "Thanks see you soon"),
        ("# **Bold** [link](http://x.y) 🎉", "Bold link"),
    ],
)
def test_clean_for_speech_strips_markup_and_emoji(markdown, spoken):
    assert clean_for_speech(markdown) == spoken


@pytest.mark.parametrize("text", ["🍕😀🎉", "👍🏽 ❤️", "  ", "**", "- 🍕"])
def test_clean_for_speech_of_nothing_speakable_is_empty(text):
    assert clean_for_speech(text) == ""


def test_clean_for_speech_keeps_plain_text():
    text = "It costs 3.50 dollars, and it's 20% off today."
    assert clean_for_speech(text) == text
