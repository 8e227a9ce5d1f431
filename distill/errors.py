"""User-facing errors: the CLI prints them on one line and exits with code 2."""


class DistillError(Exception):
    """Bad input (recipe, data file, CLI argument). The message names the file, field or line."""

    exit_code = 2
