"""`deepbox export devcontainer` builds the same environment: the exported folder is a real build context."""

from __future__ import annotations

import json

from conftest import PREFIX


def test_exported_devcontainer_builds_and_runs_the_box_python(make_project, docker_client):
    project = make_project("devc", 'frameworks = ["numpy"]')
    result = project.deepbox("export", "devcontainer")
    assert result.code == 0, result.err
    folder = project.path / ".devcontainer"
    config = json.loads((folder / "devcontainer.json").read_text())
    assert config["build"] == {"dockerfile": "Dockerfile", "context": "."}

    # What Dev Containers does first: build the context folder with its Dockerfile, then run as remoteUser.
    tag = f"{PREFIX}-devc:test"
    try:
        docker_client.images.build(path=str(folder), dockerfile=config["build"]["dockerfile"], tag=tag, rm=True)
        output = docker_client.containers.run(
            tag,
            ["-c", "import numpy, sys; print(sys.executable, numpy.__version__)"],
            entrypoint=["/opt/venv/bin/python"],
            user=config["remoteUser"],
            remove=True,
        )
        python, version = output.decode().split()
        assert python == config["customizations"]["vscode"]["settings"]["python.defaultInterpreterPath"]
        assert version.startswith("2.")
    finally:
        for image in docker_client.images.list(name=f"{PREFIX}-devc"):
            docker_client.images.remove(image.id, force=True)

    # A second export changes nothing; a devcontainer.json deepbox did not write is left alone.
    again = project.deepbox("export", "devcontainer")
    assert again.code == 0 and "up to date" in again.out
    (folder / "devcontainer.json").write_text('{"name": "mine"}\n')
    refused = project.deepbox("export", "devcontainer")
    assert refused.code == 1 and "--force" in refused.err
    assert (folder / "devcontainer.json").read_text() == '{"name": "mine"}\n'
