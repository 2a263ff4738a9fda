"""The CSV loader: the source file, the steps of a load, the report, the sample generator."""
