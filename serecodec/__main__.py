"""``python -m serecodec``: the same command as ``serecodec``."""
from .cli import main

main()
