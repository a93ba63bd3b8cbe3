from pathlib import Path

from cnnzoo.analysis.table import update_readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_model_table_is_fresh():
    text = README.read_text(encoding="utf-8")
    assert update_readme(text) == text, "README's model table is stale: run `cnnzoo table --write README.md`"
