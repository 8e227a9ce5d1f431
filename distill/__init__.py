"""distill: make 🤗 Transformers models small and fast, driven by one YAML recipe.

The package's layers, lowest first (an import-linter contract in pyproject.toml keeps them so):
machine -> data -> recipe -> models -> training -> pruning -> lowrank -> quantize
-> reporting | publish -> stages -> cli.
"""

__version__ = "0.1.0"


class DistillError(Exception):
    """Bad input (recipe, data file, CLI argument). The message names the file, field or line;
    the CLI prints it on one line and exits with code 2."""

    exit_code = 2
