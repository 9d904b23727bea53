"""The ``sweep`` command line: one module per subcommand."""
