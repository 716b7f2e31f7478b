"""weightspace: the library behind the workflow reproducing "Knowledge is a Region in Weight
Space for Fine-tuned Language Models" (Gueta et al., Findings of EMNLP 2023).

Modules, named after the paper's concepts:
- config: validation of the experiment config
- seeding: per-(dataset, seed) RNG seeds
- sources, data: raw datasets from packages, files or the hub; cleaning and splits
- finetune: the seeded, resumable finetuning loop
- weights: body-only flattening into Parquet shards and range reads
- zoo: the table of finetuned models
"""

__version__ = "0.1.0"
