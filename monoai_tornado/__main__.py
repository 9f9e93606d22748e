"""``python -m monoai_tornado``: see :mod:`monoai_tornado.cli`."""
from .cli import main

if __name__ == "__main__":
    main()
