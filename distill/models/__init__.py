"""Models: the architecture layer (`families`: one module per encoder family saying where its
blocks are and which Linear plays which role), which class rebuilds a folder (`architectures`),
where a model is (`sources`: packaged aliases, folders, Hub ids, the safetensors check;
standard library only), loading models and tokenizers safely (`loading`), DistilBERT-style
students (`student`), masked-LM models for general distillation (`mlm`), and transformers
4.57 / 5.x differences (`compat`)."""
