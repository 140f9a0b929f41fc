"""drift.py: a box's packages against the list of what its image installed from deepbox.lock."""

from __future__ import annotations

from deepbox.cli import main
from deepbox.drift import compare, pins, sentence
from deepbox.model import Drift


def test_pins_reads_freeze_lines_by_normalised_name_and_skips_the_rest():
    text = "Scikit_Learn==1.6.1\nwarning: something\n-e file:///workspace\nthreadpoolctl==3.5.0\n"
    assert pins(text) == {"scikit-learn": "1.6.1", "threadpoolctl": "3.5.0"}


def test_compare_names_added_changed_and_removed_packages_and_ignores_deepbox_tools():
    locked = {"numpy": "2.2.1", "six": "1.16.0", "tqdm": "4.67.1"}
    installed = {"numpy": "2.2.1", "six": "1.17.0", "rich": "14.0.0", "pip": "25.0", "uv": "0.13.9"}
    drift = compare(locked, installed)
    assert drift == Drift(added={"rich": "14.0.0"}, changed={"six": ("1.16.0", "1.17.0")}, removed={"tqdm": "4.67.1"})
    assert drift.items() == ["added rich 14.0.0", "changed six (1.16.0 -> 1.17.0)", "removed tqdm 4.67.1"]
    # pip counts when the lock has it (the project pinned it), as in the build's own check.
    assert compare({**locked, "pip": "24.0"}, installed).changed["pip"] == ("24.0", "25.0")


def test_drift_sentences():
    assert sentence("b", Drift()) == (
        "Box 'b' has the packages deepbox installed from deepbox.lock, none added or changed since."
    )
    assert sentence("b", Drift(added={"x": "1.0"}, changed={"y": ("1.0", "2.0")})) == (
        "Box 'b' has 2 packages that differ from deepbox.lock: added x 1.0, changed y (1.0 -> 2.0); they last until "
        "the box is recreated (a settings change, `deepbox rm`): put the ones to keep in pip = [...] in deepbox.toml."
    )


def test_status_name_and_all_hosts_do_not_go_together(capsys):
    assert main(["status", "some-box", "--all-hosts"]) == 2
    assert "NAME and --all-hosts do not go together." in capsys.readouterr().err
