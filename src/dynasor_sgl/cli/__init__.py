"""The `dynasor-sgl` command line: one module per command group, `main` the entry point."""
