"""``python -m sedd_cli`` runs the ``sedd`` command line."""

from sedd_cli.cli import main

if __name__ == "__main__":
    main()
