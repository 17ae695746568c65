"""Build the one compiled module: the order book's sides in C (``bot/_cbook.c``) and the
decision path's kernels (``bot/_cdecide.c``).

Everything else is in pyproject.toml. The extension is optional: without a C compiler the
install goes on and the book uses its pure-Python reference (``bot.book.PyBookSide``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("bot._cbook", ["bot/_cbook.c", "bot/_cdecide.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
