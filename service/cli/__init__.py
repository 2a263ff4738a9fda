"""The `deals` command line; main.main is the entry point."""
