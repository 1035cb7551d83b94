"""The README documents every option the magics accept."""

from pathlib import Path

from ftpe_magics.magics import FtpeMagics

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def magic_options() -> dict[str, list[str]]:
    options = {}
    for name in dir(FtpeMagics):
        parser = getattr(getattr(FtpeMagics, name), "parser", None)
        if parser is not None:
            options[name] = [flag for action in parser._actions for flag in action.option_strings
                             if flag.startswith("--") and flag != "--help"]
    return options


def test_every_magic_option_is_in_the_readme():
    options = magic_options()
    assert "prompt" in options and "ftpe" in options
    missing = [f"{magic} {flag}" for magic, flags in options.items() for flag in flags if f"`{flag}" not in README]
    assert missing == []
