"""The docs are the user's manual: every setting the server reads is in docs/configuration.md."""

from pathlib import Path

from server.config import Settings

CONFIGURATION = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    missing = [n.upper() for n in Settings.model_fields if f"`{n.upper()}`" not in CONFIGURATION]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
