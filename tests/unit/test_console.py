"""What the CLI prints keeps text from data as it is: a key such as [user] uid, a path with brackets, an
extra such as jax[cuda12] are not rich markup (rich would drop them as unknown tags)."""

from __future__ import annotations

from deepbox.cli import ConsoleReporter, main


def test_progress_notes_keep_keys_and_extras_in_brackets(capsys):
    reporter = ConsoleReporter()
    reporter.step("Note: UID 4242 owns /data: run `chown -R 1000:1000 /data` or set [user] uid.")
    reporter.build_line("Step 3/9 : RUN pip install jax[cuda12]")
    reporter.build_line("Collecting jax[cuda12]==0.4.30")

    assert capsys.readouterr().err.splitlines() == [
        "> Note: UID 4242 owns /data: run `chown -R 1000:1000 /data` or set [user] uid.",
        "  Step 3/9 : RUN pip install jax[cuda12]",
        "  Collecting jax[cuda12]==0.4.30",
    ]


def test_a_written_path_with_brackets_is_printed_whole(make_project, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # one line, however long the temporary folder's path
    project = make_project(folder="exp[gpu]")

    assert main(["-C", str(project), "init"]) == 0

    assert capsys.readouterr().out == f"Wrote {project / 'deepbox.toml'}. Edit it, then run `deepbox up`.\n"


def test_an_error_about_a_key_in_brackets_keeps_it(make_project, capsys):
    project = make_project('[env]\n"A[b]" = "1"\n', folder="exp[gpu]")

    assert main(["-C", str(project), "dockerfile"]) == 1

    assert capsys.readouterr().err == (
        f"Error: {project / 'deepbox.toml'}: 'env' has 'A[b]', which is not an environment variable name "
        "(letters, digits and _, not starting with a digit).\n"
    )
