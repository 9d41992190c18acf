"""Settings (pipeline/config.py, pipeline/config_sources.py): the README's configuration block is valid and shows the
defaults. (What `qhopper config` prints and where each value came from: test_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config_sources import load_settings


def test_readme_configuration_block_is_valid_and_shows_the_defaults(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("### Configuration", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "conf" / "qhopper.toml"
    config.parent.mkdir()
    config.write_text(block.replace('database_url = "sqlite:///<home>/intake.db"', ""))
    shown = load_settings(tmp_path, config)
    defaults = load_settings(tmp_path)
    sections = [name for name in defaults.model_dump() if name != "home"]
    assert sections == [name for name in shown.model_dump() if name != "home"]
    for section in sections:
        if isinstance(getattr(defaults, section), dict):  # tables by name ([backends.<name>])
            assert getattr(shown, section) == getattr(defaults, section), section
            continue
        for name, value in getattr(defaults, section).model_dump().items():
            actual = getattr(getattr(shown, section), name)
            if isinstance(value, float):
                assert actual == pytest.approx(value, rel=0.01), f"{section}.{name}"
            else:
                assert actual == value, f"{section}.{name}"
