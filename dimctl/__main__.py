"""`python -m dimctl …` — the same entry point as the `dimctl` console script."""

from dimctl.cli.main import main

if __name__ == "__main__":
    main()
