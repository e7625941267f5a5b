"""The ``minicfg`` command line: argument handling only; each command calls a library function."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def _cmd_download(args) -> None:
    from . import data

    for name in args.dataset:
        for train in (True, False):
            ds = data.load(name, train=train, download=True, root=args.root)
            print(f"{name} {'train' if train else 'test'}: {len(ds)} images under {data.data_root(args.root)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minicfg",
        description="Diffusion guidance on small data: download data, train, sample, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("download", help="download a data set into $MINICFG_DATA (needs internet)")
    p.add_argument("--dataset", nargs="+", choices=["mnist", "cifar10"], default=["mnist"],
                   help="which data sets to fetch (default: mnist)")
    p.add_argument("--root", default=None, help="data folder (default: $MINICFG_DATA or ~/.cache/minicfg)")
    p.set_defaults(func=_cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"minicfg {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
