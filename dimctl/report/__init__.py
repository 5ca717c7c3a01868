"""`dimctl report`: the paper's tables and figures from the files other commands leave behind.

inputs   — run folders and JSON-lines result files, grouped by the encoder they are about
measures — the numbers of one encoder: probe accuracies, MS-SSIM, I(X;Y), NDM, neighbours
paper    — the paper's published numbers, for the optional comparison columns
tables   — Table-1-style, Table-4-style and generic result tables, run configurations
ablation — α/β/γ sweeps found among the runs (paper App. A.5)
plots    — matplotlib figures as PNG bytes
document — the report as a list of blocks; render — Markdown, HTML or plain text
"""
