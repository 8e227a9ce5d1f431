"""Tasks and their data: the built-in tasks and custom ones (`tasks`), reading GLUE TSVs, CSV /
JSON tables and CoNLL / JSON-lines token files with one-line errors (`files`, `table_files`,
`token_data`, `textfiles`), tokenized splits and collators (`splits`), each task's metric
(`metrics`, with a local `evaluate` module), and raw-text corpora with masking for MLM work
(`corpus`, `masking`). Nothing here knows about models or training."""
