"""``python -m tensorhouse`` runs the command-line interface."""

from tensorhouse.cli import main

if __name__ == "__main__":
    main()
