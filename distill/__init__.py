"""distill: make 🤗 Transformers models small and fast, driven by one YAML recipe."""

__version__ = "0.1.0"
