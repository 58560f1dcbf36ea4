"""``python -m quakescale`` = the ``quakescale`` command."""

from ._entry import main

if __name__ == "__main__":
    main()
