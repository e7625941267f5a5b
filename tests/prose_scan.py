"""Measured-looking numbers typed into a notebook's markdown (tests/test_notebook_prose.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

# a decimal (0.941, 4.07), a percentage (94%, 0.5 %), or a ratio ("2x", "1.89×"); not part of a longer token
NUMBER = re.compile(r"(?<![\w.\-/])(\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?\s?[x×](?![\w])|\d+\.\d+)(?![\w.]*\d)")
# a sentence that names where its numbers come from: an author-year citation, a paper's table or figure, a file of
# the repository's docs or package data, or an explicit "quoted from"
SOURCE = re.compile(r"\b[A-Z][\w\-]+(?: et al\.| & [A-Z][\w\-]+)?,? (?:19[5-9]\d|20[0-3]\d)\b"
                    r"|\b(?:Table|Tables|Fig\.|Figure)\s?\d|docs/[\w/.\-]+|minicfg/reference|quoted from")
# links, and references to a paper's or a notebook's parts ("Sec. 3.2", "Eq. 4.1")
LINK = re.compile(r"\]\([^)]*\)|https?://\S+|arXiv:\s?\d+\.\d+"
                  r"|\b(?:Sec|Secs|Eq|Eqs|Alg|App)\.\s?\d+(?:\.\d+)*|\b(?:Section|Appendix)\s\d+(?:\.\d+)*")
# LaTeX commands glued to a number ("\\approx0.05", "\\le0.007") are spaces, so the number is seen
LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
SENTENCE_END = re.compile(r"(?<=[.;:!?])\s+(?=[A-Z*$(\[`])|\n\s*\n|\n\s*[*\-] ")


MIMES = ("text/plain", "text/markdown", "text/html", "text/latex")


def output_texts(cell) -> list[str]:
    """Every text a cell's stored outputs show: streams, and results and displays in each text type."""
    texts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            texts.append("".join(out["text"]))
        texts.extend("".join(out["data"][mime]) for mime in MIMES if out.get("data", {}).get(mime))
    return texts


def _digits(token: str) -> str:
    return re.sub(r"[\s%x×]", "", token)


def typed_numbers(path) -> list[tuple[int, str, str]]:
    """(cell index, number, sentence) for every measured-looking number in a markdown cell that appears neither in
    the notebook's code or outputs nor in a sentence naming its source."""
    nb = json.loads(Path(path).read_text())
    known = "\n".join("\n".join(["".join(c["source"]), *output_texts(c)]) for c in nb["cells"]
                      if c["cell_type"] == "code")
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = LATEX_COMMAND.sub(" ", LINK.sub("", "".join(cell["source"])))
        for sentence in SENTENCE_END.split(text):
            if SOURCE.search(sentence):
                continue
            for m in NUMBER.finditer(sentence):
                digits = _digits(m.group(1))
                if not re.search(rf"(?<![\d.]){re.escape(digits)}(?![\d])", known):
                    found.append((i, m.group(1), sentence.strip()))
    return found


if __name__ == "__main__":
    import sys
    for p in sys.argv[1:]:
        hits = typed_numbers(p)
        print(f"== {Path(p).name}: {len(hits)}")
        for i, num, s in hits:
            print(f"  [{i}] {num!r}: {s[:160]!r}")
