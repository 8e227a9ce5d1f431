"""Helper for test_multiprocess.py: train a tiny dropout-free BERT with distill's loop and save
the final weights; run once plainly and once under `accelerate launch --num_processes 2`."""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from datasets import Dataset
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding, PreTrainedTokenizerFast

from distill.recipe import TrainConfig
from distill.training.loop import train_model
from distill.training.steps import hard_label_step


def main(out_dir: Path) -> None:
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(split_batches=True))
    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(40)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    collator = DataCollatorWithPadding(PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]"))
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 12, (101,), generator=g).tolist()
    ids = [torch.randint(2, 42, (n,), generator=g).tolist() for n in lengths]
    data = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * n for n in lengths],
                              "labels": [sum(x) % 2 for x in ids]})
    torch.manual_seed(0)
    config = BertConfig(vocab_size=42, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config)
    cfg = TrainConfig(max_steps=10, batch_size=16, learning_rate=1e-3, eval_every=5, log_every=1, group_by_length=True)
    from distill.training.evaluation import predict_logits

    def evaluate(m):
        logits, labels = predict_logits(m, data, collator, 32, accelerator)
        return {"accuracy": float((logits.argmax(-1) == labels).mean()), "examples": float(len(labels))}

    # 96 = 6 full batches: an uneven last batch is padded with repeated examples under several
    # processes (Accelerate's even_batches), which would make the comparison inexact.
    model, outcome = train_model(model, data.select(range(96)), cfg=cfg, accelerator=accelerator, collator=collator,
                                 step_loss=hard_label_step(False), evaluate=evaluate, primary_metric="accuracy",
                                 seed=1, log_path=out_dir / "log.jsonl")
    if accelerator.is_main_process:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "weights.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
