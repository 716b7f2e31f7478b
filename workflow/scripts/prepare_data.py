"""Clean one dataset and cut its seeded, stratified train/dev/probe/test splits."""

import logging

from weightspace.data import SPLITS, load_raw, load_split, make_splits, row_hashes, save_split
from weightspace.io import sha256_file, write_json
from weightspace.logs import to_log_file
from weightspace.sources import archive_of, source_record

to_log_file(snakemake.log[0])
name = snakemake.wildcards.dataset
entry = snakemake.params.entry
archive = archive_of(snakemake.input.package) if "package" in snakemake.input.keys() else None
splits = make_splits(name, load_raw(name, entry, archive), entry, snakemake.params.settings)
for split in SPLITS:
    save_split(getattr(splits, split), splits.labels, snakemake.output[split])
info = {
    "dataset": name,
    "labels": splits.labels,
    "pair": "text_pair" in splits.train,
    "label_counts": {s: getattr(splits, s)["label"].value_counts().sort_index().to_dict() for s in SPLITS},
    "cleaning": splits.stats,
    "settings": snakemake.params.settings,
    # provenance down to the data: the source (archive and its sha256, or the hub commit) and
    # the sha256 of every split written from it
    "source": source_record(entry["source"], archive),
    "splits_sha256": {s: sha256_file(snakemake.output[s]) for s in SPLITS},
    # the probe split's examples, by content: no finetune or BitFit run may read one of them
    # (each model's metrics.json lists the hashes of the rows it read)
    "probe_row_hashes": row_hashes(load_split(snakemake.output.probe)),
}
write_json(snakemake.output.info, info)
logging.info("%s: %s", name, splits.stats["sizes"])
