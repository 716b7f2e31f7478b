"""Gram reduce: add the partial Gram matrices; derive cosine, Euclidean distance and norms."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from weightspace.geometry import cosine, euclidean, matrix_table, norms
from weightspace.logs import to_log_file
from weightspace.zoo import read_zoo

to_log_file(snakemake.log[0])
ids = read_zoo(snakemake.input.zoo).column("model_id").to_pylist()
gram = sum(np.load(p, allow_pickle=False) for p in snakemake.input.parts)
if gram.shape != (len(ids), len(ids)):
    raise ValueError(f"Gram parts are {gram.shape}, the zoo has {len(ids)} models: rerun gram_part")
pq.write_table(matrix_table(ids, gram), snakemake.output.gram)
pq.write_table(matrix_table(ids, cosine(gram)), snakemake.output.cosine)
pq.write_table(matrix_table(ids, euclidean(gram)), snakemake.output.euclidean)
pq.write_table(pa.table({"model_id": ids, "norm": norms(gram)}), snakemake.output.norms)
