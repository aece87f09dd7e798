from edgecheck.cli import cli_entry

cli_entry()
