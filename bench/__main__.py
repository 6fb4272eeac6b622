"""`python -m bench` (also installed as the `bench` command)."""

from bench.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
