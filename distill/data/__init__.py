"""Tasks and their data: the built-in tasks and custom ones (`tasks`), reading GLUE TSVs, CSV /
JSON tables and CoNLL / JSON-lines token files with one-line errors (`files`, `table_files`,
`token_data`, `textfiles`), extractive question answering (`qa_files` reads and checks SQuAD files,
`qa` cuts windows, `qa_answers` turns logits back into answer text), tokenized splits and collators
(`splits`), each task's metric (`metrics`, with local `evaluate` modules), and raw-text corpora with
masking for MLM work (`corpus`, `masking`). Nothing here knows about models or training."""
