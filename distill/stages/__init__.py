"""The run: `pipeline` drives a recipe's stages in order (fingerprints, reuse, the report), handing
each runner a `context.RunContext`. One runner module per stage kind (`runners` maps kinds to them):
teacher, distill (and baseline), general, prune, lowrank (factorize, trim_vocab), quantize (onnx,
bnb, cast), qat, publish. Runners never import each other; what they share lies below them
(common, inputs, recovery, seeds, context). `preflight` checks a recipe before anything trains;
`curves` runs one stage kind at several strengths (scripts/bench_pruning.py, bench_lowrank.py)."""
