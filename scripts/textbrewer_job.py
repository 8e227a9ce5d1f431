"""The TextBrewer half of the distill-vs-TextBrewer side-by-side: one small logits distillation job.

A teacher BertForSequenceClassification (num_labels 2) is distilled into a DistilBERT-style student
(the teacher's embeddings, pooler, classifier and the --layers encoder layers, in order) with
TextBrewer 0.2.1's BasicDistiller on a `sentence<TAB>label` TSV, then the student is scored once on
the dev TSV. Prints one JSON line on stdout: loop_seconds (inside distiller.train()), accuracy,
train_examples, dev_examples, versions; everything else goes to stderr. scripts/bench_overhead.py
calls it for the side-by-side with distill.

TextBrewer needs transformers 4.57, so it runs in a venv of its own (CPU torch from this machine's disk):
    python3 -m venv .venv-textbrewer
    .venv-textbrewer/bin/pip install -q torch==2.13.0
    .venv-textbrewer/bin/pip install -q "transformers==4.57.6" "textbrewer==0.2.1" "datasets==5.0.1" "huggingface_hub<1.0" numpy
Run with HF_HUB_OFFLINE=1:
    .venv-textbrewer/bin/python scripts/textbrewer_job.py --teacher DIR --train T.tsv --dev D.tsv --out TMPDIR
"""
import argparse
import json
import logging
import random
import sys
import time

import numpy as np
import textbrewer
import torch
import transformers
from textbrewer import BasicDistiller, DistillationConfig, TrainingConfig
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").rsplit("\t", 1) for line in f.readlines()[1:] if line.strip()]
    return [s for s, _ in rows], [int(y) for _, y in rows]


def make_student(teacher, layers):
    cfg = teacher.config.to_dict()
    cfg["num_hidden_layers"] = len(layers)
    student = BertForSequenceClassification(type(teacher.config).from_dict(cfg))
    prefix = "bert.encoder.layer."
    state = {}
    for k, v in teacher.state_dict().items():
        if k.startswith(prefix):
            idx, rest = k[len(prefix):].split(".", 1)
            if int(idx) not in layers:
                continue
            k = f"{prefix}{layers.index(int(idx))}.{rest}"
        state[k] = v.clone()
    student.load_state_dict(state, strict=True)  # embeddings, pooler, classifier, the listed layers
    return student


def adaptor(batch, outputs):
    # 'logits' feed the KD loss; 'losses' (the model's own CE on batch['labels']) feed the hard-label term.
    return {"logits": outputs.logits, "losses": outputs.loss}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--dev", required=True)
    p.add_argument("--layers", default="0,2,4")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", required=True, help="TextBrewer's output_dir (it saves gs<step>.pkl there)")
    args = p.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    random.seed(args.seed); np.random.seed(args.seed); torch.manual_seed(args.seed)
    layers = [int(x) for x in args.layers.split(",")]

    tok = AutoTokenizer.from_pretrained(args.teacher)
    teacher = BertForSequenceClassification.from_pretrained(args.teacher).float()
    student = make_student(teacher, layers)

    def encode(path):
        sents, labels = read_tsv(path)
        enc = tok(sents, truncation=True, max_length=args.max_length)
        return [{**{k: enc[k][i] for k in enc}, "labels": labels[i]} for i in range(len(sents))]

    def collate(rows):  # pad to the longest in the batch; a plain dict, since TextBrewer tests `type(batch) is dict`
        return dict(tok.pad(rows, padding="longest", return_tensors="pt"))

    train, dev = encode(args.train), encode(args.dev)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(args.seed))
    total_steps = len(loader) * args.epochs

    # As distill's recipe defaults: AdamW, weight decay 0.01 except biases and LayerNorm weights.
    named = list(student.named_parameters())
    nd = lambda n: n.endswith("bias") or "LayerNorm" in n
    optimizer = torch.optim.AdamW([{"params": [q for n, q in named if not nd(n)], "weight_decay": 0.01},
                                   {"params": [q for n, q in named if nd(n)], "weight_decay": 0.0}], lr=args.lr)

    train_config = TrainingConfig(device="cpu", output_dir=args.out, log_dir=None, fp16=False)
    # TextBrewer's total loss is  kd_loss_weight * L_KD + hard_label_weight * sum(adaptor 'losses').
    # L_KD (kd_loss_type 'ce') = mean over the batch of -sum softmax(t/T) * log_softmax(s/T): a soft
    # cross-entropy, NOT multiplied by T**2. So alpha -> kd_loss_weight, 1 - alpha -> hard_label_weight
    # (TextBrewer's default hard_label_weight is 0: hard labels are ignored unless set).
    distill_config = DistillationConfig(temperature=args.temperature, kd_loss_type="ce",
                                        kd_loss_weight=args.alpha, hard_label_weight=1.0 - args.alpha)
    distiller = BasicDistiller(train_config, distill_config, model_T=teacher, model_S=student,
                               adaptor_T=adaptor, adaptor_S=adaptor)

    with distiller:  # teacher in eval mode, student in train mode
        t0 = time.perf_counter()
        # No callback: no evaluation during training. train() also saves one checkpoint per epoch
        # (torch.save of the student's state_dict into --out), which is inside loop_seconds.
        distiller.train(optimizer, loader, num_epochs=args.epochs, max_grad_norm=1.0,  # distill clips at 1.0 too
                        scheduler_class=get_linear_schedule_with_warmup,
                        scheduler_args={"num_warmup_steps": int(0.1 * total_steps), "num_training_steps": total_steps})
        loop_seconds = time.perf_counter() - t0

    student.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev), args.batch_size):
            batch = collate(dev[i:i + args.batch_size])
            labels = batch.pop("labels")
            correct += (student(**batch).logits.argmax(-1) == labels).sum().item()
    print(json.dumps({"loop_seconds": round(loop_seconds, 3), "accuracy": correct / len(dev),
                      "train_examples": len(train), "dev_examples": len(dev),
                      "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                   "textbrewer": textbrewer.__version__}}))


if __name__ == "__main__":
    main()
