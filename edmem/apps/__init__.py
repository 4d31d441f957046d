"""Applications on top of the library: command-line tools (each has ``main(argv) -> int``) and
the ``edmem serve`` server (``edmem.apps.serve``). Nothing below ``edmem.apps`` imports it."""
