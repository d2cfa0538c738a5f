"""The README's example runs as written and learns XOR."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_trains_xor(capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert "total params: 13" in capsys.readouterr().out
    result, model, xor = namespace["result"], namespace["model"], namespace["xor"]
    assert result.history[-1]["train_accuracy"] == 1.0
    logits = model.apply(result.state.params, xor["x"])[:, 0]
    np.testing.assert_array_equal(np.asarray(logits > 0), xor["y"] == 1)
