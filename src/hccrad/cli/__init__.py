"""Command-line interface (`hccrad ...`)."""
