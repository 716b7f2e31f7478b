"""The paper preset's hub entries, checked offline (weightspace.check_sources; docs/hub-datasets.md)."""

from __future__ import annotations

import subprocess
import sys

import yaml

from conftest import REPO, SRC
from weightspace import check_sources as cs

PRESET = REPO / "presets/paper.yaml"
SCRIPTS = REPO / "presets/paper.hub-scripts.txt"
CONFIG = yaml.safe_load(PRESET.read_text(encoding="utf-8"))
PROBLEMS = cs.offline_problems(CONFIG, cs.load_hub_scripts(SCRIPTS))

# Revisions that could not be resolved to a commit from stored material (no hub access here),
# said on purpose as `revision: resolve` (prepare_data takes main's commit and records it);
# `python -m weightspace.check_sources presets/paper.yaml --pin` on a machine with hub access
# writes them in.
UNPINNED = {"datasets.isear.source.revision", "datasets.poem_sentiment.source.revision"}


def _of(kind: str) -> list[str]:
    return [str(p) for p in PROBLEMS if p.kind == kind]


def test_every_hub_id_is_namespaced():
    assert len(cs.hub_entries(CONFIG)) == 34  # the base model and 33 datasets
    assert _of("namespace") == []


def test_no_loading_script_repository():
    assert _of("script") == []


def test_only_the_known_entries_are_resolved_at_run_time():
    assert {p.key for p in PROBLEMS if p.kind == "resolve"} == UNPINNED


def test_every_revision_is_a_commit_or_said_to_be_resolved():
    assert _of("revision") == []
    lines = PRESET.read_text(encoding="utf-8").splitlines()
    for key in UNPINNED:
        name = key.split(".")[1]
        assert CONFIG["datasets"][name]["source"]["revision"] == "resolve"
        start = lines.index(f"  {name}:")
        end = next(
            i for i in range(start + 1, len(lines)) if lines[i].startswith("  ") and not lines[i].startswith("   ") and not lines[i].lstrip().startswith("#")
        )
        comments = [ln for ln in lines[start - 6 : end] if ln.lstrip().startswith("#")]
        assert any("resolve" in ln for ln in comments), f"{name}: the entry must say why it is resolved at run time"


def test_scripts_list_names_the_retired_repositories():
    scripts = cs.load_hub_scripts(SCRIPTS)
    for repo in ("esnli/esnli", "cogcomp/trec", "takala/financial_phrasebank", "mteb/amazon_reviews_multi"):
        assert repo in scripts
    assert "65752bf53af25bc935a0dce92fb5b6c930728450" in scripts["cogcomp/trec"]


def test_base_model_is_the_namespaced_roberta():
    assert CONFIG["base_model"]["hub"] == "FacebookAI/roberta-base"


def test_multirc_puts_question_and_answer_before_the_paragraph():
    # Longest-first truncation trims the longer text of the pair from its end: the paragraph.
    entry = CONFIG["datasets"]["multirc"]
    assert entry["text"] == ["question", "answer"] and entry["text_pair"] == "paragraph"


def test_check_offline_flags_each_kind_on_a_hand_made_config():
    sha = "0123456789abcdef0123456789abcdef01234567"
    scripts = cs.parse_hub_scripts(f"# header\nOrg/Scripted   {sha}  # export commit\n")
    config = {
        "base_model": {"hub": "roberta-base"},  # bare and unpinned
        "datasets": {
            "bare": {"source": {"hub": "glue", "name": "cola", "revision": sha}},
            "scripted": {"source": {"hub": "org/scripted", "revision": "1" * 40}},  # a commit of main
            "unpinned": {"source": {"hub": "org/plain"}},
            "branch": {"source": {"hub": "org/plain", "revision": "main"}},
            "export_branch": {"source": {"hub": "org/scripted", "revision": "refs/convert/parquet"}},
            "export_commit": {"source": {"hub": "Org/Scripted", "revision": sha}},
            "fine": {"source": {"hub": "org/plain", "revision": sha}},
            "local": {"source": {"package": "x==1", "files": {"all": "a.csv"}}},
        },
    }
    found = {(p.key, p.kind) for p in cs.offline_problems(config, scripts)}
    assert found == {
        ("base_model.hub", "namespace"),
        ("base_model.revision", "revision"),
        ("datasets.bare.source.hub", "namespace"),
        ("datasets.scripted.source.hub", "script"),
        ("datasets.unpinned.source.revision", "revision"),
        ("datasets.branch.source.revision", "revision"),
        ("datasets.export_branch.source.revision", "revision"),  # allowed repo, but still to pin
    }
    messages = cs.check_offline(config, scripts)
    assert len(messages) == len(found)
    assert any("'glue' is not 'namespace/name'" in m for m in messages)
    assert cs.check_offline({"datasets": {"fine": config["datasets"]["fine"]}}, scripts) == []


def test_check_offline_defaults_to_the_list_beside_the_paper_preset():
    config = {"datasets": {"e": {"source": {"hub": "esnli/esnli", "revision": "2" * 40}}}}
    assert [m for m in cs.check_offline(config) if "loading-script" in m]


PRESET_TEXT = """\
base_model:
  hub: org/model
datasets:
  # a comment that stays
  alpha:
    source:
      hub: org/alpha
      revision: null  # TO PIN
      splits: {train: train}
    text: text
  beta:
    source:
      hub: org/beta
      splits: {all: train}
    label: revision  # a field called revision outside the source block is left alone
"""


def test_set_revision_edits_only_that_entry_and_keeps_comments():
    sha = "a" * 40
    text = cs.set_revision(PRESET_TEXT, "datasets.alpha.source", sha)
    text = cs.set_revision(text, "datasets.beta.source", "b" * 40)
    text = cs.set_revision(text, "base_model", "c" * 40)
    config = yaml.safe_load(text)
    assert config["datasets"]["alpha"]["source"]["revision"] == sha
    assert config["datasets"]["beta"]["source"]["revision"] == "b" * 40
    assert config["datasets"]["beta"]["label"] == "revision"
    assert config["base_model"]["revision"] == "c" * 40
    assert "# a comment that stays" in text and "TO PIN" not in text
    assert len(text.splitlines()) == len(PRESET_TEXT.splitlines()) + 2
    assert cs.set_revision("base_model: {hub: org/model}\n", "base_model", sha) is None  # flow style: paste by hand


def test_pin_writes_commits_and_export_commits(tmp_path, monkeypatch):
    preset = tmp_path / "p.yaml"
    preset.write_text(PRESET_TEXT.replace("hub: org/alpha", "hub: org/scripted").replace("revision: null  # TO PIN", "revision: refs/convert/parquet"))
    scripts = cs.scripts_path_for(preset)
    scripts.write_text("# list\norg/scripted  # main: scripted.py\n")
    resolved = {("org/scripted", "refs/convert/parquet"): "d" * 40, ("org/beta", None): "e" * 40, ("org/model", None): "f" * 40}
    monkeypatch.setattr(cs, "resolve_revision", lambda repo, rev, kind="dataset": resolved[(repo, rev)])
    assert cs.pin(preset, scripts, None) == []
    config = yaml.safe_load(preset.read_text())
    assert cs.offline_problems(config, cs.load_hub_scripts(scripts)) == []
    assert scripts.read_text().splitlines()[1] == f"org/scripted {'d' * 40}  # main: scripted.py"


def test_pin_finds_every_entry_of_the_paper_preset(tmp_path, monkeypatch):
    # The real file's layout: --pin must be able to write every revision line (no hand pasting).
    preset = tmp_path / "paper.yaml"
    preset.write_text(PRESET.read_text(encoding="utf-8"))
    scripts = cs.scripts_path_for(preset)
    scripts.write_text(SCRIPTS.read_text(encoding="utf-8"))
    monkeypatch.setattr(cs, "resolve_revision", lambda repo, rev, kind="dataset": rev if rev and cs.COMMIT.match(rev) else "9" * 40)
    assert cs.pin(preset, scripts, None) == []
    pinned = yaml.safe_load(preset.read_text())
    assert cs.offline_problems(pinned, cs.load_hub_scripts(scripts)) == []
    assert {k: v for k, v in pinned.items() if k != "datasets"} == {k: v for k, v in CONFIG.items() if k != "datasets"}
    for name, entry in CONFIG["datasets"].items():
        assert {**entry, "source": {**entry["source"], "revision": None}} == {
            **pinned["datasets"][name],
            "source": {**pinned["datasets"][name]["source"], "revision": None},
        }
    # (no entry reads a parquet-export branch since SNLI stands in for e-SNLI: the scripts list's
    # export commits are written as test_pin_writes_commits_and_export_commits checks)
    assert pinned["datasets"]["isear"]["source"]["revision"] == "9" * 40


def _fake_loader(rows, names=None):
    def load(repo, name, split, revision, n):
        return rows[:n], names

    return load


def test_check_entry_reports_fields_and_labels():
    entry = {
        "source": {"hub": "org/x", "revision": "a" * 40, "splits": {"train": "train", "test": "validation"}},
        "text": ["q", "a"],
        "text_pair": "p",
        "label": "label",
        "labels": [0, 1],
    }
    good = [{"q": "Who?", "a": "Me", "p": "A paragraph.", "label": 1}, {"q": "Why?", "a": "No", "p": "B.", "label": 0}]
    ok = cs.check_entry("x", entry, 5, _fake_loader(good, ["False", "True"]))
    assert ok.ok and "label names ['False', 'True']" in ok.notes

    bad_field = cs.check_entry("x", entry, 5, _fake_loader([{"q": "Who?", "p": "P.", "label": 1}]))
    assert not bad_field.ok and "['a'] missing" in bad_field.notes[0]

    bad_label = cs.check_entry("x", entry, 5, _fake_loader([{**good[0], "label": -1}]))
    assert not bad_label.ok and "['-1'] outside the declared set" in bad_label.notes[0]

    dropped = cs.check_entry("x", {**entry, "other_labels": "drop"}, 5, _fake_loader([{**good[0], "label": -1}]))
    assert dropped.ok

    mapped = {**entry, "labels": ["no", "yes"], "label_map": {0: "no", 1: "yes"}}
    assert cs.check_entry("x", mapped, 5, _fake_loader(good)).ok

    def broken(*args):
        raise RuntimeError("Dataset scripts are no longer supported, but found x.py")

    failed = cs.check_entry("x", entry, 5, broken)
    assert not failed.ok and "RuntimeError: Dataset scripts are no longer supported" in failed.notes[0]
    table = cs.format_table([ok, failed])
    assert "OK" in table.splitlines()[1] and "FAIL" in table.splitlines()[2]


def test_module_imports_no_hub_library():
    code = "import sys, weightspace.check_sources; print(sorted(m for m in ('datasets', 'huggingface_hub') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_offline_command_names_the_unpinned_entries():
    done = subprocess.run(
        [sys.executable, "-m", "weightspace.check_sources", str(PRESET), "--offline"], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}
    )
    assert done.returncode == 0  # the `resolve` entries are said on purpose: reported, not a failure
    assert "datasets.isear.source.revision" in done.stdout and "datasets.esnli" not in done.stdout
    assert done.stdout.count("offline:") == len(UNPINNED)
