"""``python -m actors.cli``: the same as the ``sessions`` console script."""

from actors.cli import main

main()
