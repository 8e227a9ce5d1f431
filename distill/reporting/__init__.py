"""Reporting: a run's report.json / report.md / report.png (`report`), latency, size and memory
of any artifact (`bench`), and the GLUE table across runs (`glue_table`)."""
