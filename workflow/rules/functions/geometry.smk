# Input functions and settings of the rules in workflow/rules/geometry.smk (kept apart from the
# rules, as Snakemake's linter asks).


def table1_input(key):
    """Group scores of the grouping geometry.table1 names under `key` (none if no Table 1)."""
    table1 = config["geometry"]["table1"] or {}
    if not table1.get(key):
        return []
    return [f"results/geometry/clusters/{table1[key]}/group_scores.csv"]


def gram_part_mem_mb():
    """Memory of a Gram map job: models x chunk_size x (4 + 8) bytes, with headroom."""
    block_mb = len(MEMBERS) * config["flatten"]["chunk_size"] * 12 / 1e6
    return int(1000 + 2 * block_mb)
