# Input functions and settings of the rules in workflow/rules/formation.smk (kept apart from
# the rules, as Snakemake's linter asks).

# The finetunes' snapshot steps (finetune.snapshots, resolved by config validation); none: the
# formation stage is not planned.
SNAPSHOTS = config["finetune"].get("snapshots", [])


def snapshot_folders(members, steps):
    """The flattened snapshots of `members` at `steps` (member-major: a member's steps in order)."""
    return [
        f"results/formation/weights/{dataset}/seed{seed}/step{step}"
        for dataset, seed in members
        for step in steps
    ]


def formation_targets():
    """The formation stage's tables and figures when the config has snapshots."""
    if not SNAPSHOTS:
        return []
    return [
        "results/tables/formation.csv",
        "results/figures/formation.png",
        "results/figures/formation_settling.png",
    ]
