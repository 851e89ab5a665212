"""``python -m bench``: every benchmark, one after the other."""

from __future__ import annotations

from bench import index_bench


def main() -> None:
    index_bench.main()


if __name__ == "__main__":
    main()
