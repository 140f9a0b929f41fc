"""IDE integration: the files and links PyCharm, VS Code and JetBrains Gateway need to reach a box."""
