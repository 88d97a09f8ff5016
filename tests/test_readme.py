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
