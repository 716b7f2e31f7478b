"""Per pair set: where the lowest loss lies, the midpoint and the extrapolation extremes."""

import pandas as pd

from weightspace.io import write_json
from weightspace.logs import to_log_file
from weightspace.paths import path_statistics

to_log_file(snakemake.log[0])
table = pd.concat([pd.read_parquet(p) for p in snakemake.input.tables], ignore_index=True)
write_json(snakemake.output.stats, path_statistics(table))
