"""Per-module counts of a mutmut run (docs/mutation.md): mutants, killed, survived, timeouts, no tests, not run.

Usage, after `mutmut run` (it reads the verdicts mutmut keeps in mutants/minicfg/*.py.meta):
  python bench/mutation_summary.py [--survivors]

mutmut's own `mutmut results` lists the survivors; this adds the per-module table of docs/mutation.md.
``--survivors`` also prints the name of every surviving mutant, for `mutmut show NAME`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mutmut.stats import status_by_exit_code

COLUMNS = ("killed", "survived", "timeout", "no tests", "not checked")


def summary(folder: Path = Path("mutants")) -> dict[str, dict[str, list[str]]]:
    """module -> status -> mutant names, from mutmut's per-file verdicts."""
    out = {}
    for meta in sorted((folder / "minicfg").glob("*.py.meta")):
        by_status: dict[str, list[str]] = {}
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            by_status.setdefault(status_by_exit_code[code], []).append(name)
        out[meta.name.removesuffix(".py.meta")] = by_status
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="print every surviving mutant's name")
    args = parser.parse_args()
    table = summary()
    print("| module | mutants | " + " | ".join(COLUMNS) + " | other |")
    print("| --- " * (len(COLUMNS) + 3) + "|")
    for module, by_status in table.items():
        counts = [len(by_status.get(c, [])) for c in COLUMNS]
        other = sum(len(v) for k, v in by_status.items() if k not in COLUMNS)
        total = sum(len(v) for v in by_status.values())
        print(f"| {module} | {total} | " + " | ".join(map(str, counts)) + f" | {other} |")
    if args.survivors:
        for by_status in table.values():
            for name in by_status.get("survived", []):
                print(name)


if __name__ == "__main__":
    main()
