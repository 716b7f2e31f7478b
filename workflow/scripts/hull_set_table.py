"""One set's table (In, In' or Ex of one group at one granularity): its pieces, gathered in
point order, each point scored on every target exactly once."""

import pandas as pd

from weightspace.logs import to_log_file

to_log_file(snakemake.log[0])
table = pd.concat([pd.read_parquet(p) for p in snakemake.input.pieces], ignore_index=True)
table = table.sort_values(["point", "target"], kind="stable").reset_index(drop=True)
counts = table.groupby("target")["point"].agg(["nunique", "size", "min", "max"])
expected = snakemake.params.points  # the set's point count
bad = counts[(counts["nunique"] != expected) | (counts["size"] != expected) | (counts["min"] != 0) | (counts["max"] != expected - 1)]
if not bad.empty:
    raise ValueError(f"the pieces of {snakemake.output.table} do not hold points 0..{expected - 1} once per target:\n{bad}")
table.to_parquet(snakemake.output.table, index=False)
