"""The README's Python examples run as printed (with the MNIST path filled in and fewer epochs)."""

import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_two_setup_commands_first():
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).strip().splitlines()
    assert len(first) == 2
    assert first[0].endswith("vaekit train") and "pytest" in first[1]


def test_readme_python_examples_run(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spaces = []
    for block in python_blocks():  # each block runs as pasted, in a namespace of its own
        namespace: dict = {}
        code = block.replace("path/to/mnist", str(mnist_dir)).replace("epochs=10", "epochs=1").replace(
            "epochs=20", "epochs=2")
        exec(compile(code, "README.md", "exec"), namespace)
        spaces.append(namespace)
    assert spaces[0]["three"].shape == (1, 784)
    assert spaces[2]["strip"].shape == (10, 784)
    assert (tmp_path / "my-vae" / "model.safetensors").exists()


PLACEHOLDERS = ("table.csv", "train.npy", "new.npy", " RUN", "...", "torchrun", "vaekit explore")  # not runnable as pasted


def _quick(line: str, mnist_dir) -> list[str]:
    """A README command made quick: one epoch (one more on --resume), a few examples and samples."""
    import shlex

    words = shlex.split(line.split("#")[0].replace("../shared/data/mnist", str(mnist_dir))
                        .replace("path/to/mnist", str(mnist_dir)))[1:]
    samples = "--samples" in words
    for flag in ("--epochs", "--k", "--limit", "--steps", "--samples"):
        while flag in words:
            i = words.index(flag)
            del words[i:i + 2]
    if words[0] == "train":
        words += ["--epochs", "2" if "--resume" in words else "1", "--limit", "300", "--no-progress"]
    if words[0] == "evaluate":
        words += ["--k", "5", "--limit", "20", "--no-progress"] + (["--samples", "20"] if samples else [])
    if words[0] == "disentanglement":
        words += ["--dci-train", "200", "--limit", "5000"]
    if words[0] == "prior":
        words += ["--steps", "20", "--limit", "300", "--no-progress"]
    return words


def test_readme_command_lines_run(mnist_dir, tmp_path, monkeypatch, capsys):
    """Every `vaekit ...` line of the README's command blocks runs (made quick), in order, in one folder."""
    from vaekit.cli import main

    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)[1:]
    lines = [l.strip() for b in blocks for l in b.splitlines() if l.strip().startswith("vaekit ")]
    ran = 0
    for line in lines:
        if any(p in line for p in PLACEHOLDERS):
            continue
        assert main(_quick(line, mnist_dir)) == 0, (line, capsys.readouterr().err)
        ran += 1
    assert ran >= 18
