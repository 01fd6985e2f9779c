"""The README is the user's manual: every setting the server reads is documented there."""

from pathlib import Path

from server.config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    missing = [n.upper() for n in Settings.model_fields if f"`{n.upper()}`" not in README]
    assert not missing, f"settings missing from README: {missing}"
