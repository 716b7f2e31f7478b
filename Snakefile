# Knowledge is a Region in Weight Space for Fine-tuned Language Models (Gueta et al., 2023):
# seeded finetunes per dataset -> flattened body weights -> geometry and loss analyses.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The library lives in src/: make it importable here and in every job's process.
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
# (Set, not read: the job processes inherit it, including on a cluster.)
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [_SRC, os.environ.get("PYTHONPATH")]))
)


# config.yaml is the embedded default experiment; a --configfile (e.g. presets/paper.yaml)
# replaces it instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/functions/resources.smk"
include: "workflow/rules/functions/data.smk"
include: "workflow/rules/functions/summary.smk"
include: "workflow/rules/functions/geometry.smk"
include: "workflow/rules/functions/paths.smk"
include: "workflow/rules/functions/hull.smk"
include: "workflow/rules/functions/centroid.smk"
include: "workflow/rules/functions/formation.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/flatten.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/geometry.smk"
include: "workflow/rules/loss.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/hull.smk"
include: "workflow/rules/centroid.smk"
include: "workflow/rules/formation.smk"


rule all:
    default_target: True
    input:
        rules.zoo.output.table,
        rules.finetune_summary.output.csv,
        rules.plot_finetune_accuracy.output.png,
        all_targets(),
