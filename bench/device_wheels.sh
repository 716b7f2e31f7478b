#!/usr/bin/env bash
# The Python packages bench/gpu_acceptance.py needs that the lent GPU machine's image lacks
# (snakemake and what it needs, datasets, jsonschema), built here as Python 3.12 wheels for
# x86-64 into .whl/ (git-ignored), to travel with a device run (`carry: [".whl"]`):
#
#   bash bench/device_wheels.sh                        # here, once per session (needs python3.12)
#   device run, carry [".whl"]:
#     python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#       && export PYTHONPATH=/tmp/site:$PYTHONPATH && python3 bench/gpu_acceptance.py --out $OUT/acceptance.json
#
# Left out: what the device image already has (torch, transformers and the tokenizers,
# safetensors, NumPy, pandas, pyarrow, SciPy, scikit-learn, huggingface_hub: carrying another
# version would shadow the one transformers was built against) and pulp, the ILP scheduler's
# solver (36 MB): gpu_acceptance runs Snakemake with --scheduler greedy. `datasets` is held
# below 5 (5.x needs pyarrow >= 24; 4.x takes pyarrow >= 15). Checked here: the wheels build
# and Snakemake runs from them without pulp (Python 3.12, no GPU); not yet on a device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON312:-python3.12}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip wheel --quiet -w .whl "snakemake==9.27.1" "datasets>=4,<5" "jsonschema>=4.18" threadpoolctl
for name in torch transformers tokenizers safetensors numpy pandas pyarrow scipy scikit_learn huggingface_hub hf_xet pulp; do
  rm -f .whl/"$name"-*.whl
done
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
