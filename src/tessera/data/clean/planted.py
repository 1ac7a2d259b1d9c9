"""Planted duplicates: a corpus with known copies, to measure how well a clean removes them.

`plant` takes distinct documents and adds copies of some of them: exact copies (with case,
spacing and punctuation changes that normalisation must see through) and near copies made by
word edits, paragraph reordering, or added boilerplate (a header and footer like a web page's).
It also adds the same boilerplate to unrelated documents, which must not be taken for
duplicates. `score` compares what a cleaner kept with the planted groups: recall (copies
removed) and precision (removed documents that were copies). The tests and
benchmarks/data_clean.py use it, for Tessera and for other tools alike.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

BOILERPLATE = [
    (
        "Home | News | Sport | Weather | Contact us | Subscribe to our newsletter for updates",
        "Copyright 2024 Example Media Group. All rights reserved. Terms of use | Privacy policy "
        "| Cookie settings | Accessibility statement | Advertise with us",
    ),
    (
        "Skip to main content. Menu. Search this site. Sign in or register for free",
        "Share this article on social media. Related stories. Most read this week. Back to top "
        "of the page. Follow us for more stories like this one",
    ),
]


@dataclass
class PlantedCorpus:
    documents: list[str] = field(default_factory=list)
    exact_groups: list[list[int]] = field(default_factory=list)  # indices; first = original
    near_groups: list[list[int]] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)  # copy index -> how it was made
    origin: list[int] = field(default_factory=list)  # index of the original each one comes from


def synthetic_documents(count: int, seed: int = 0) -> list[str]:
    """Distinct documents of generated prose (a Zipf-distributed made-up vocabulary with common
    English function words), several paragraphs each, that pass the default quality filters."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    vocabulary = sorted(
        {"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(20000)}
    )
    rng.shuffle(vocabulary)
    cumulative = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(len(vocabulary))))
    function_words = ["the", "of", "and", "to", "a", "in", "that", "with", "is", "was", "for"]
    documents = []
    for _ in range(count):
        paragraphs = []
        for _ in range(rng.randint(3, 6)):
            sentences = []
            for _ in range(rng.randint(3, 6)):
                words = [
                    rng.choice(function_words) if rng.random() < 0.3 else word
                    for word in rng.choices(
                        vocabulary, cum_weights=cumulative, k=rng.randint(8, 20)
                    )
                ]
                sentences.append(" ".join(words).capitalize() + rng.choice(".....?!"))
            paragraphs.append(" ".join(sentences))
        documents.append("\n\n".join(paragraphs))
    return documents


def _edit(text: str, rate: float, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, round(rate * len(words)))):
        position = rng.randrange(len(words))
        action = rng.random()
        if action < 0.4:
            words[position] = words[rng.randrange(len(words))]
        elif action < 0.7 and len(words) > 10:
            del words[position]
        else:
            words.insert(position, words[rng.randrange(len(words))])
    return " ".join(words)


def _reorder(text: str, rng: random.Random) -> str:
    paragraphs = text.split("\n\n")
    if len(paragraphs) < 2:
        return _edit(text, 0.02, rng)
    i, j = rng.sample(range(len(paragraphs)), 2)
    paragraphs[i], paragraphs[j] = paragraphs[j], paragraphs[i]
    return "\n\n".join(paragraphs)


def _boilerplate(text: str, rng: random.Random) -> str:
    header, footer = rng.choice(BOILERPLATE)
    return f"{header}\n\n{text}\n\n{footer}"


def _exact(text: str, rng: random.Random) -> str:
    """The same text after normalisation: other case, doubled spaces, changed punctuation."""
    changed = text.upper() if rng.random() < 0.3 else text
    return changed.replace(". ", ".  ").replace(",", " ,") + ("\n" if rng.random() < 0.5 else "")


def plant(
    originals: list[str],
    seed: int = 0,
    exact_fraction: float = 0.1,
    near_fraction: float = 0.2,
    edit_rate: float = 0.02,
    boilerplate_fraction: float = 0.1,
) -> PlantedCorpus:
    """Originals plus planted copies, shuffled; groups name which documents are copies."""
    rng = random.Random(seed)
    items: list[tuple[str, int, str]] = []  # (text, group key, kind)
    groups: dict[int, str] = {}
    for number, text in enumerate(originals):
        roll = rng.random()
        if roll < exact_fraction:
            groups[number] = "exact"
            copies = [(_exact(text, rng), "exact") for _ in range(rng.randint(1, 2))]
        elif roll < exact_fraction + near_fraction:
            groups[number] = "near"
            makers = [
                ("edit", lambda t: _edit(t, edit_rate, rng)),
                ("reorder", lambda t: _reorder(t, rng)),
                ("boilerplate", lambda t: _boilerplate(t, rng)),
            ]
            copies = [(make(text), kind) for kind, make in rng.sample(makers, rng.randint(1, 2))]
        else:
            copies = []
            if rng.random() < boilerplate_fraction:  # a different document, same page template
                text = _boilerplate(text, rng)
        items.append((text, number, "original"))
        items.extend((copy, number, kind) for copy, kind in copies)
    rng.shuffle(items)
    corpus = PlantedCorpus()
    members: dict[int, list[int]] = {}
    for index, (text, key, kind) in enumerate(items):
        corpus.documents.append(text)
        corpus.origin.append(key)
        if key in groups:
            members.setdefault(key, []).append(index)
            if kind != "original":
                corpus.kinds[index] = kind
    for key, kind in groups.items():
        (corpus.exact_groups if kind == "exact" else corpus.near_groups).append(members[key])
    return corpus


def score(
    corpus: PlantedCorpus, kept: set[int], ignore: frozenset[int] = frozenset()
) -> dict[str, float]:
    """Recall and precision of duplicate removal, given the indices of documents kept.
    Documents in `ignore` (say, ones the quality filters are meant to remove) count neither
    way, and neither do the groups they belong to."""

    def recall(groups: list[list[int]]) -> tuple[int, int]:
        groups = [group for group in groups if not ignore.intersection(group)]
        found = sum(min(sum(i not in kept for i in group), len(group) - 1) for group in groups)
        return found, sum(len(group) - 1 for group in groups)

    exact_found, exact_total = recall(corpus.exact_groups)
    near_found, near_total = recall(corpus.near_groups)
    planted = {i for group in corpus.exact_groups + corpus.near_groups for i in group}
    removed = set(range(len(corpus.documents))) - kept - ignore
    wrong = len(removed - planted)
    correct = exact_found + near_found
    return {
        "exact_recall": exact_found / max(exact_total, 1),
        "near_recall": near_found / max(near_total, 1),
        "recall": correct / max(exact_total + near_total, 1),
        "precision": correct / max(correct + wrong, 1),
        "removed": len(removed),
        "planted_copies": exact_total + near_total,
    }
