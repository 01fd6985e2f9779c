"""Text between the LLM and TTS: sentence splitting and cleaning, as plain functions.

TTS is fed sentence by sentence so the first audio leaves before the reply is complete; the
splitter must not break on "Dr." or "3.5", and must not wait for more text than needed.
Markdown and emoji are meant for eyes, so they are stripped before speech.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e",
    "approx", "dept", "est", "inc", "ltd", "co", "mt", "ft", "u.s", "a.m", "p.m",
}  # fmt: skip
# End of a sentence: terminal punctuation (plus closing quotes/brackets), then whitespace.
_BOUNDARY = re.compile(r"[.!?…]+[\"')\]]*\s+|[\n]{1,}")


class SentenceSplitter:
    """Accumulates streamed text and yields complete sentences as soon as they are certain.

    A boundary is only trusted once the whitespace after it has arrived, so "3." followed later
    by "5" is never split. Very short fragments are merged into the next sentence so TTS is not
    asked for one word at a time.
    """

    def __init__(self, min_chars: int = 12) -> None:
        self.min_chars = min_chars
        self._buffer = ""

    def push(self, text: str) -> list[str]:
        self._buffer += text
        sentences: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self._buffer):
            candidate = self._buffer[start : match.end()].strip()
            if not candidate:
                start = match.end()
                continue
            if len(candidate) < self.min_chars or _ends_with_abbreviation(candidate):
                continue
            sentences.append(candidate)
            start = match.end()
        self._buffer = self._buffer[start:]
        return sentences

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []


def _ends_with_abbreviation(sentence: str) -> bool:
    if not sentence.endswith("."):
        return False
    last = sentence.rstrip(".").rsplit(None, 1)[-1].lower()
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


_MARKDOWN = [
    (re.compile(r"```.*?```", re.S), " "),  # code blocks are not read aloud
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images
    (re.compile(r"\[([^\]]*)\]\([^)]*\)"), r"\1"),  # links keep their text
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),  # headings
    (re.compile(r"^\s*[-*+]\s+", re.M), ""),  # bullets
    (re.compile(r"^\s*>\s?", re.M), ""),  # quotes
    (re.compile(r"(\*\*|__)(.*?)\1"), r"\2"),
    (re.compile(r"(?<!\w)[*_]([^*_\n]+)[*_](?!\w)"), r"\1"),
    (re.compile(r"~~(.*?)~~"), r"\1"),
    (re.compile(r"^\s*\|?[-:| ]{3,}\|?\s*$", re.M), " "),  # table rules
    (re.compile(r"\|"), ", "),
]
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f900-\U0001f9ff"
    "\U0000fe00-\U0000fe0f\U0000200d\U00002b00-\U00002bff\U0001f1e6-\U0001f1ff]+"
)


def clean_for_speech(text: str) -> str:
    """Strip markdown syntax and emoji; collapse whitespace. May return ''."""
    for pattern, replacement in _MARKDOWN:
        text = pattern.sub(replacement, text)
    text = _EMOJI.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return "" if not re.search(r"\w", text) else text
