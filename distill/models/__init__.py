"""Models: architecture facts (`architectures`: which class rebuilds a folder, where the blocks
are), where a model is (`sources`: packaged aliases, folders, Hub ids, the safetensors check;
standard library only), loading models and tokenizers safely (`loading`), DistilBERT-style
students (`student`), masked-LM models for general distillation (`mlm`), and transformers
4.57 / 5.x differences (`compat`)."""
