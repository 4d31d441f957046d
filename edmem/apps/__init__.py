"""Applications on top of the library: command-line tools (each module has ``main(argv) -> int``)."""
