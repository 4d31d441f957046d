"""Applications built on the library floors below: the ``edmem serve`` server, and (as the
package is reorganised) the other commands. Nothing below ``edmem.apps`` imports it."""
