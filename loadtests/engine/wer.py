#!/usr/bin/env python3
"""wer.py — word error rate of transcripts against references. Standard library only.

  wer.py REFERENCES HYPOTHESES [--json] [--details] [--literal-numbers]

Both files have NAME<TAB>TEXT lines (REFERENCES is a fixtures directory's
wer.txt). Every reference NAME must have a hypothesis (a missing one counts as
empty: all deletions). Prints `WER 3.4 % (2 edits / 59 words, 8 files)`, or
with --json one object with the counts and, per file, the normalised texts.

Normalisation, the same rule as the server's tests (src/model/text.rs
`normalise`): lower case; every character that is not a letter, digit or
apostrophe becomes a space; apostrophes at the ends of words dropped;
bracketed tags such as [BLANK_AUDIO] removed first; the numerals 0-20 spelled out
(Whisper writes "platform 2" for "platform two"); other numbers as they come.
--literal-numbers leaves the numerals as they come too.

The error rate is (substitutions + deletions + insertions) / reference words,
summed over the files: a Levenshtein distance over words.
"""

import argparse
import json
import re
import sys

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
).split()


def normalise(text, spell_numbers=True):
    text = re.sub(r"\[[^\]]*\]", " ", text)
    cleaned = "".join(ch.lower() if ch.isalnum() or ch == "'" else " " for ch in text)
    words = []
    for word in cleaned.split():
        word = word.strip("'")
        if not word:
            continue
        if spell_numbers and word.isdigit() and word.isascii() and int(word) < len(NUMBER_WORDS):
            word = NUMBER_WORDS[int(word)]
        words.append(word)
    return words


def edit_distance(reference, hypothesis):
    """Levenshtein distance between two word lists (two rows of the table)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, 1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_word != hyp_word),  # substitution or match
            )
        previous = current
    return previous[-1]


def read_tsv(path):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            name, _, text = line.partition("\t")
            rows[name] = text
    return rows


def score(references, hypotheses, spell_numbers=True):
    files = []
    edits = words = 0
    for name, reference in references.items():
        ref = normalise(reference, spell_numbers)
        hyp = normalise(hypotheses.get(name, ""), spell_numbers)
        distance = edit_distance(ref, hyp)
        edits += distance
        words += len(ref)
        files.append({"name": name, "edits": distance, "words": len(ref),
                      "reference": " ".join(ref), "hypothesis": " ".join(hyp)})
    return {"wer": edits / words if words else 0.0, "edits": edits, "words": words,
            "files": files, "missing": sorted(set(references) - set(hypotheses))}


def selftest():
    assert normalise("Hello, World! [BLANK_AUDIO] It's platform 2.") == ["hello", "world", "it's", "platform", "two"]
    assert normalise("9:30", spell_numbers=False) == ["9", "30"]
    assert normalise("'quoted' 21") == ["quoted", "21"]
    assert edit_distance("a b c".split(), "a b c".split()) == 0
    assert edit_distance("a b c".split(), "a x c d".split()) == 2
    assert edit_distance([], "a b".split()) == 2
    assert edit_distance("a b".split(), []) == 2
    assert edit_distance("the cat sat".split(), "cat sat down".split()) == 2


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("references", nargs="?")
    parser.add_argument("hypotheses", nargs="?")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--details", action="store_true", help="list the files with errors")
    parser.add_argument("--literal-numbers", action="store_true", help="do not spell out 0-20")
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args()
    if args.selftest:
        selftest()
        print("wer.py: self-test passed")
        return
    if not (args.references and args.hypotheses):
        parser.error("REFERENCES and HYPOTHESES are needed")
    result = score(read_tsv(args.references), read_tsv(args.hypotheses), not args.literal_numbers)
    if args.json:
        print(json.dumps(result))
        return
    print(f"WER {100 * result['wer']:.1f} % ({result['edits']} edits / {result['words']} words, "
          f"{len(result['files'])} files)")
    if result["missing"]:
        print(f"  missing hypotheses: {', '.join(result['missing'])}", file=sys.stderr)
    if args.details:
        for f in result["files"]:
            if f["edits"]:
                print(f"  {f['name']}: {f['edits']} edits: {f['hypothesis']!r} (reference {f['reference']!r})")


if __name__ == "__main__":
    main()
